package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"kvmount.dev/kvmount/internal/azsim"
)

// seedRun runs one command line against the server in dataDir, with
// {placeholders} filled from vars, and returns its output.
func seedRun(t *testing.T, dataDir, line string, vars map[string]string) string {
	t.Helper()
	for k, v := range vars {
		line = strings.ReplaceAll(line, "{"+k+"}", v)
	}
	args := strings.Fields(line)
	if args[0] != "azsim" {
		t.Fatalf("line %q does not start with azsim", line)
	}
	var out bytes.Buffer
	if err := Run(context.Background(), append([]string{"--data-dir", dataDir}, args[1:]...), &out); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return out.String()
}

// TestSeedCommands runs the seed's az lines, with az replaced by azsim, in
// the seed's order, and checks what each prints: the user-assigned section
// (aks show --query … -o tsv, identity create, vmss/vm identity assign,
// set-policy), the system-assigned section (vmss/vm identity show -o yaml
// with type SystemAssigned and principalId) and the pod-identity set-policy.
func TestSeedCommands(t *testing.T) {
	dir := t.TempDir()
	s, err := azsim.Start(context.Background(), azsim.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	vars := map[string]string{"rg": "myResourceGroup", "kv": "kvmount-demo", "cluster": "myAKSCluster", "vm": "agent-pool-vm"}
	run := func(line string) string { return seedRun(t, dir, line, vars) }

	// Set-up the seed assumes: a vault with objects, an AKS cluster, a VM.
	run("azsim keyvault create -n {kv} -g {rg} -l westus2")
	run("azsim keyvault secret set --vault-name {kv} -n secret1 --value demo-value")
	run("azsim keyvault key create --vault-name {kv} -n key1 --kty RSA --size 2048")
	run("azsim keyvault secret set --vault-name {kv} -n secret1 --value demo-value-2")
	if out := run("azsim keyvault secret list --vault-name {kv} -o json"); strings.Contains(out, "demo-value") ||
		!strings.Contains(out, `/secrets/secret1"`) || strings.Count(out, `"name"`) != 1 {
		t.Errorf("secret list printed\n%s\nwant secret1 once, its id without a version, no value", out)
	}
	if out := run("azsim keyvault secret list --vault-name {kv} -o table"); !strings.HasPrefix(out, "ContentType") || !strings.Contains(out, "secret1") {
		t.Errorf("secret list -o table printed\n%s", out)
	}
	run("azsim aks create -g {rg} -n {cluster} --node-count 2 --enable-addons azure-keyvault-secrets-provider --enable-managed-identity --generate-ssh-keys")
	run("azsim vm create -g {rg} -n {vm} --image Ubuntu2204")
	vars["vmss"] = strings.TrimSpace(run("azsim vmss list -g MC_{rg}_{cluster}_westus2 --query [0].name -o tsv"))

	// Use a user-assigned managed identity.
	addon := strings.TrimSpace(run("azsim aks show -g {rg} -n {cluster} --query addonProfiles.azureKeyvaultSecretsProvider.identity.clientId -o tsv"))
	if len(addon) != 36 {
		t.Fatalf("aks show --query …clientId -o tsv printed %q, want a client ID", addon)
	}
	var id map[string]any
	if err := json.Unmarshal([]byte(run("azsim identity create -g {rg} -n my-identity")), &id); err != nil {
		t.Fatal(err)
	}
	vars["identity-resource-id"], vars["identity-client-id"] = id["id"].(string), id["clientId"].(string)
	run("azsim vmss identity assign -g MC_{rg}_{cluster}_westus2 -n {vmss} --identities {identity-resource-id}")
	run("azsim vm identity assign -g {rg} -n {vm} --identities {identity-resource-id}")
	for _, kind := range []string{"key", "secret", "certificate"} {
		run("azsim keyvault set-policy -n {kv} --" + kind + "-permissions get --spn {identity-client-id}")
	}

	// Use a system-assigned managed identity.
	run("azsim vmss identity assign -g MC_{rg}_{cluster}_westus2 -n {vmss}")
	var shown map[string]any
	if err := yaml.Unmarshal([]byte(run("azsim vmss identity show -g MC_{rg}_{cluster}_westus2 -n {vmss} -o yaml")), &shown); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(shown["type"].(string), "SystemAssigned") || shown["principalId"] == nil {
		t.Fatalf("vmss identity show -o yaml = %v, want type SystemAssigned… and a principalId", shown)
	}
	vars["identity-principal-id"] = shown["principalId"].(string)
	run("azsim vm identity assign -g {rg} -n {vm}")
	if out := run("azsim vm identity show -g {rg} -n {vm} -o yaml"); !strings.Contains(out, "type: SystemAssigned, UserAssigned") {
		t.Errorf("vm identity show -o yaml:\n%s", out)
	}
	for _, kind := range []string{"key", "secret", "certificate"} {
		run("azsim keyvault set-policy -n {kv} --" + kind + "-permissions get --spn {identity-principal-id}")
	}

	// Use pod identities: the identity the pod-identity add-on created.
	vars["pod-identity-client-id"] = addon
	for _, kind := range []string{"key", "secret", "certificate"} {
		run("azsim keyvault set-policy -n {kv} --" + kind + "-permissions get --spn {pod-identity-client-id}")
	}

	policies := run("azsim keyvault show -n {kv} --query properties.accessPolicies[*].permissions.secrets -o json")
	var perms [][]string
	if err := json.Unmarshal([]byte(policies), &perms); err != nil || len(perms) != 3 {
		t.Fatalf("access policies %s: want three principals with secret permissions", policies)
	}
	for _, p := range perms {
		if !reflect.DeepEqual(p, []string{"get"}) {
			t.Errorf("secret permissions %v, want [get]", p)
		}
	}
}

func TestParseArgs(t *testing.T) {
	dir := t.TempDir()
	pemFile := filepath.Join(dir, "k.pem")
	os.WriteFile(pemFile, []byte("-----BEGIN PRIVATE KEY-----\n"), 0o600)
	tests := []struct {
		name    string
		verb    string
		args    []string
		want    map[string]any
		wantOut outputOpts
		wantErr string
	}{
		{"lists and query", "keyvault set-policy", []string{"-n", "kv", "--secret-permissions", "get", "list", "--spn", "abc", "-o", "tsv", "--query", "id"},
			map[string]any{"name": "kv", "secretPermissions": []string{"get", "list"}, "spn": "abc"}, outputOpts{format: "tsv", query: "id"}, ""},
		{"equals form and bool", "keyvault create", []string{"--name=kv", "-g", "rg", "--enable-rbac-authorization"},
			map[string]any{"name": "kv", "resourceGroup": "rg", "enableRbacAuthorization": true}, outputOpts{}, ""},
		{"bool with value", "keyvault create", []string{"-n", "kv", "--enable-rbac-authorization", "false"},
			map[string]any{"name": "kv", "enableRbacAuthorization": false}, outputOpts{}, ""},
		{"file read", "keyvault key import", []string{"--vault-name", "kv", "-n", "k", "--pem-file", pemFile},
			map[string]any{"vaultName": "kv", "name": "k", "pem": "-----BEGIN PRIVATE KEY-----\n"}, outputOpts{}, ""},
		{"ignored az flags", "aks create", []string{"-g", "rg", "-n", "c", "--generate-ssh-keys", "--enable-managed-identity", "--node-count", "3"},
			map[string]any{"resourceGroup": "rg", "name": "c", "nodeCount": 3}, outputOpts{}, ""},
		{"unknown flag", "identity create", []string{"--nmae", "x"}, nil, outputOpts{}, "unrecognized arguments: --nmae"},
		{"bad int", "vmss create", []string{"--instance-count", "two"}, nil, outputOpts{}, "invalid int value: 'two'"},
		{"missing value", "identity create", []string{"-n"}, nil, outputOpts{}, "expected one argument"},
		{"secret value and file", "keyvault secret set", []string{"--vault-name", "kv", "-n", "s", "--value", "v", "--file", pemFile}, nil, outputOpts{}, "usage error: --value VALUE | --file PATH"},
		{"secret without value", "keyvault secret set", []string{"--vault-name", "kv", "-n", "s"}, nil, outputOpts{}, "usage error: --value VALUE | --file PATH"},
		{"secret from file", "keyvault secret set", []string{"--vault-name", "kv", "-n", "s", "-f", pemFile},
			map[string]any{"vaultName": "kv", "name": "s", "value": "-----BEGIN PRIVATE KEY-----\n"}, outputOpts{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, opts, err := parseArgs(tt.verb, tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) || opts != tt.wantOut {
				t.Fatalf("got %v %+v %v, want %v %+v", got, opts, err, tt.want, tt.wantOut)
			}
		})
	}
}

func TestQuery(t *testing.T) {
	var doc any
	json.Unmarshal([]byte(`{"a":{"b-c":[{"n":1},{"n":2},{"x":3}]},"s":"v"}`), &doc)
	tests := []struct {
		expr    string
		want    any
		wantErr bool
	}{
		{"s", "v", false},
		{`a."b-c"[1].n`, 2.0, false},
		{`a."b-c"[-1].x`, 3.0, false},
		{`a."b-c"[*].n`, []any{1.0, 2.0}, false},
		{`a."b-c"[].n`, []any{1.0, 2.0}, false},
		{"missing.path", nil, false},
		{`a."b-c"[9]`, nil, false},
		{"a | b", nil, true},
		{"a.", nil, true},
		{"[?x]", nil, true},
	}
	for _, tt := range tests {
		got, err := Query(doc, tt.expr)
		if (err != nil) != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Query(%q) = %v, %v; want %v (error %v)", tt.expr, got, err, tt.want, tt.wantErr)
		}
	}
}

// FuzzQuery checks the evaluator never panics and that a plain field path
// reaches the same value as walking the maps by hand.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{"a.b", `"x y".z[0]`, "[*]", "a[-1][*].b", "..", `"`, "[", "a[99999999999999999999]"} {
		f.Add(s)
	}
	var doc any
	json.Unmarshal([]byte(`{"a":{"b":[1,{"c":"d"}]},"l":[{"a":1}]}`), &doc)
	f.Fuzz(func(t *testing.T, expr string) {
		got, err := Query(doc, expr)
		if err != nil {
			return
		}
		if expr == "a.b" && !reflect.DeepEqual(got, doc.(map[string]any)["a"].(map[string]any)["b"]) {
			t.Fatalf("a.b = %v", got)
		}
	})
}

func TestFormat(t *testing.T) {
	v := map[string]any{"b": true, "a": "x", "num": 2.0, "o": map[string]any{"k": "v"}}
	tests := []struct{ format, want string }{
		{"tsv", "x\tTrue\t2\n"},
		{"yaml", "a: x\nb: true\nnum: 2\no:\n  k: v\n"},
		{"none", ""},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if err := Format(&b, v, tt.format); err != nil || b.String() != tt.want {
			t.Errorf("Format %s = %q, %v; want %q", tt.format, b.String(), err, tt.want)
		}
	}
	if err := Format(&bytes.Buffer{}, v, "xml"); err == nil {
		t.Error("unknown format accepted")
	}
}

// TestFormatTable: az's table output: scalar keys capitalised and sorted,
// id/type/etag and nulls left out, numbers right-aligned, one row per list
// element, a bare scalar under "Result".
func TestFormatTable(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"object", map[string]any{"name": "kv1", "id": "/x", "location": "eastus", "tags": map[string]any{}, "n": 12.0, "gone": nil},
			"Location      N  Name\n----------  ---  ------\neastus       12  kv1\n"},
		{"list", []any{map[string]any{"name": "a", "enabled": true}, map[string]any{"name": "long-name", "enabled": false}},
			"Enabled    Name\n---------  ---------\nTrue       a\nFalse      long-name\n"},
		{"scalar", "value", "Result\n--------\nvalue\n"},
		{"empty list", []any{}, ""},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if err := Format(&b, tt.v, "table"); err != nil || b.String() != tt.want {
			t.Errorf("%s: Format table = %q, %v; want %q", tt.name, b.String(), err, tt.want)
		}
	}
}

// TestHelp: azsim serve --help and every verb's --help print usage and
// succeed, as az does.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"serve", "--help"}, {"keyvault", "create", "--help"}, {"vmss", "list", "-h"}, {"--help"}, {"--version"}} {
		var out strings.Builder
		if err := Run(context.Background(), args, &out); err != nil || out.Len() == 0 {
			t.Errorf("azsim %s: %v, %d bytes", strings.Join(args, " "), err, out.Len())
		}
	}
}
