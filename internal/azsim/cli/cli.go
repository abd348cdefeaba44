// Package cli is azsim's command line: `azsim serve` runs the local cloud,
// and every other command is shaped like `az` (same verbs, flags, output
// formats and --query paths), so that a seed's `az …` lines run with `az`
// replaced by `azsim`. Those commands talk to the running server's admin API.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/version"
)

// DefaultDataDir is where azsim keeps state unless told otherwise.
const DefaultDataDir = "/var/lib/kvmount/azsim"

// Run executes one azsim command line (without the program name).
func Run(ctx context.Context, args []string, stdout io.Writer) error {
	dataDir, args := dataDirArg(args)
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		_, err := io.WriteString(stdout, usage())
		return err
	}
	switch args[0] {
	case "version", "--version", "-version":
		_, err := fmt.Fprintln(stdout, version.JSON())
		return err
	case "serve":
		return serve(ctx, dataDir, args[1:], stdout)
	case "ca":
		e, err := azsim.ReadEndpoints(dataDir)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, e.CA)
		return err
	case "endpoints":
		e, err := azsim.ReadEndpoints(dataDir)
		if err != nil {
			return err
		}
		return Format(stdout, toGeneric(e), "json")
	}
	verb, rest := splitVerb(args)
	if verb == "keyvault certificate get-default-policy" {
		return Format(stdout, defaultPolicy, "json")
	}
	if _, ok := commands[verb]; !ok {
		return fmt.Errorf("'%s' is not an azsim command; see `azsim help`", strings.Join(args, " "))
	}
	if slices.ContainsFunc(rest, func(a string) bool { return a == "-h" || a == "--help" }) {
		_, err := io.WriteString(stdout, verbUsage(verb))
		return err
	}
	return runVerb(ctx, dataDir, verb, rest, stdout)
}

// verbUsage lists a verb's flags, as `az <verb> --help` does.
func verbUsage(verb string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: azsim %s [flags] [-o json|table|tsv|yaml|none] [--query PATH] [--data-dir DIR]\n\nFlags:\n", verb)
	for _, spec := range commands[verb] {
		if spec.kind == ignored || spec.kind == ignoredBool {
			fmt.Fprintf(&b, "  %s (accepted, as az takes it; no effect)\n", strings.Join(spec.names, " "))
			continue
		}
		fmt.Fprintf(&b, "  %s\n", strings.Join(spec.names, " "))
	}
	return b.String()
}

func runVerb(ctx context.Context, dataDir, verb string, rest []string, stdout io.Writer) error {
	argMap, opts, err := parseArgs(verb, rest)
	if err != nil {
		return err
	}
	if p, ok := argMap["policy"].(map[string]any); ok {
		argMap["policy"] = restPolicy(p)
	}
	result, err := Call(ctx, dataDir, verb, argMap)
	if err != nil {
		return err
	}
	// az prints a list verb's result as a JSON array (the REST API's
	// {"value": [...]} unwrapped), so --query "[0].name" works on it.
	if isList(verb) {
		if m, ok := result.(map[string]any); ok {
			if v, ok := m["value"]; ok && len(m) == 1 {
				result = v
			}
		}
	}
	if opts.query != "" {
		if result, err = Query(result, opts.query); err != nil {
			return err
		}
	}
	return Format(stdout, result, opts.format)
}

func isList(verb string) bool {
	last := verb[strings.LastIndex(verb, " ")+1:]
	return last == "list" || strings.HasPrefix(last, "list-")
}

// splitVerb takes the leading words up to the first flag as the verb.
func splitVerb(args []string) (string, []string) {
	i := 0
	for i < len(args) && !strings.HasPrefix(args[i], "-") {
		i++
	}
	return strings.Join(args[:i], " "), args[i:]
}

// dataDirArg takes --data-dir from anywhere in args, else $AZSIM_DATA_DIR,
// else DefaultDataDir.
func dataDirArg(args []string) (string, []string) {
	dir := os.Getenv("AZSIM_DATA_DIR")
	var rest []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--data-dir" && i+1 < len(args) {
			dir, i = args[i+1], i+1
			continue
		}
		if v, ok := strings.CutPrefix(args[i], "--data-dir="); ok {
			dir = v
			continue
		}
		rest = append(rest, args[i])
	}
	if dir == "" {
		dir = DefaultDataDir
	}
	return dir, rest
}

// Call posts a verb to the running server's admin API and returns its result.
func Call(ctx context.Context, dataDir, verb string, args map[string]any) (any, error) {
	e, err := azsim.ReadEndpoints(dataDir)
	if err != nil {
		return nil, err
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	if err != nil {
		return nil, fmt.Errorf("read the admin token: %w (run as the user that runs azsim serve)", err)
	}
	tr, err := azsim.NewTransport(e.Address, e.CA)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(map[string]any{"verb": verb, "args": args})
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+azsim.ManagementHost+azsim.AdminPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("azsim at %s is not answering (is `azsim serve` running?): %w", e.Address, err)
	}
	defer resp.Body.Close()
	var out struct {
		Result any               `json:"result"`
		Error  *azsim.AdminError `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("admin API answered %s: %w", resp.Status, err)
	}
	if out.Error != nil {
		return nil, out.Error
	}
	return out.Result, nil
}

// restPolicy converts az's certificate policy shape (keyProperties,
// secretProperties, x509CertificateProperties, issuerParameters) to the
// REST shape Key Vault takes; a REST-shaped policy passes unchanged.
func restPolicy(p map[string]any) map[string]any {
	if _, az := p["keyProperties"]; !az {
		if _, az = p["x509CertificateProperties"]; !az {
			return pick(p, "key_props", "secret_props", "x509_props", "issuer")
		}
	}
	out := map[string]any{}
	if kp, ok := p["keyProperties"].(map[string]any); ok {
		out["key_props"] = rename(kp, map[string]string{"keyType": "kty", "keySize": "key_size", "curve": "crv", "exportable": "exportable", "reuseKey": "reuse_key"})
	}
	if sp, ok := p["secretProperties"].(map[string]any); ok {
		out["secret_props"] = rename(sp, map[string]string{"contentType": "contentType"})
	}
	if xp, ok := p["x509CertificateProperties"].(map[string]any); ok {
		x := rename(xp, map[string]string{"subject": "subject", "validityInMonths": "validity_months"})
		if san, ok := xp["subjectAlternativeNames"].(map[string]any); ok {
			x["sans"] = rename(san, map[string]string{"dnsNames": "dns_names"})
		}
		out["x509_props"] = x
	}
	if ip, ok := p["issuerParameters"].(map[string]any); ok {
		out["issuer"] = rename(ip, map[string]string{"name": "name"})
	}
	return out
}

func rename(m map[string]any, names map[string]string) map[string]any {
	out := map[string]any{}
	for from, to := range names {
		if v, ok := m[from]; ok && v != nil {
			out[to] = v
		}
	}
	return out
}

func pick(m map[string]any, keys ...string) map[string]any {
	out := map[string]any{}
	for _, k := range keys {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}

func toGeneric(v any) any {
	b, _ := json.Marshal(v)
	var g any
	_ = json.Unmarshal(b, &g)
	return g
}

func usage() string {
	verbs := make([]string, 0, len(commands))
	for v := range commands {
		verbs = append(verbs, "  azsim "+v)
	}
	sort.Strings(verbs)
	return `azsim: a local Azure cloud (Key Vault, Entra ID, IMDS, pod-identity NMI) for kvmount.

Usage:
  azsim serve [--data-dir DIR] [--addr 127.0.0.1:16600] [--latency 20ms] [--get-limit 4000]
              [--kubeconfig FILE] [--trust-ca FILE]... [--node-address NAME=IP]...
                                                 run the cloud until interrupted
  azsim ca                                                print the path of azsim's CA certificate
  azsim endpoints                                         print addresses (TLS listener, IMDS, NMI)
  azsim keyvault certificate get-default-policy
  azsim version                                           print the version (also --version)
  azsim <command> --help                                  the command's flags

Commands shaped like az (same flags; -o json|table|tsv|yaml|none, --query a.b[0].c):
` + strings.Join(verbs, "\n") + `

State lives in --data-dir (or $AZSIM_DATA_DIR; default ` + DefaultDataDir + `).
`
}
