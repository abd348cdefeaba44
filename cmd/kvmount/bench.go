package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"kvmount.dev/kvmount/internal/azsim/cli"
	"kvmount.dev/kvmount/internal/bench"
)

// benchProvider is `kvmount bench provider`: it drives any provider socket
// with one Mount request and prints latency, throughput, errors and, with
// azsim as the backend, Key Vault requests per mount.
func benchProvider(ctx context.Context, args []string, out io.Writer) error {
	var cfg bench.Config
	var requestFile, classFile, podFile, azsimDir, vault string
	secrets := secretFlags{}
	fs := flag.NewFlagSet("kvmount bench provider", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.Endpoint, "endpoint", "unix:///var/run/secrets-store-csi-providers/azure.sock", "provider socket")
	fs.StringVar(&requestFile, "request", "", "Mount request file (JSON or YAML: attributes, secrets, permission)")
	fs.StringVar(&classFile, "class", "", "SecretProviderClass manifest to build the request from (with --pod)")
	fs.StringVar(&podFile, "pod", "", "Pod manifest to build the request from (with --class)")
	fs.Var(&secrets, "secret", "nodePublishSecretRef entry KEY=VALUE (repeatable), with --class")
	fs.IntVar(&cfg.Concurrency, "c", 1, "concurrent mounts")
	fs.DurationVar(&cfg.Duration, "d", 0, "run for this long")
	fs.IntVar(&cfg.Count, "n", 0, "run this many mounts (default 100 when -d is not set)")
	fs.StringVar(&azsimDir, "azsim-data-dir", "", "azsim data dir, to count Key Vault requests per mount (with --vault)")
	fs.StringVar(&vault, "vault", "", "vault whose requests to count")
	pos, err := parseVerb(fs, args, out, "kvmount bench provider --endpoint unix:///…/azure.sock (--request FILE | --class SPC --pod POD) [-c N] [-d 10s | -n N]")
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	switch {
	case requestFile != "":
		cfg.Request, err = bench.LoadRequest(requestFile)
	case classFile != "" && podFile != "":
		cfg.Request, err = bench.FromClass(classFile, podFile, secrets)
	default:
		return fmt.Errorf("%w: give --request FILE, or --class SPC.yaml --pod POD.yaml", errUsage)
	}
	if err != nil {
		return err
	}
	if azsimDir != "" && vault != "" {
		cfg.KVRequests = azsimCounter(azsimDir, vault)
	}
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	res.Print(out)
	return nil
}

// azsimCounter reads a vault's request counter from a running azsim.
func azsimCounter(dataDir, vault string) func(context.Context) (uint64, error) {
	return func(ctx context.Context) (uint64, error) {
		out, err := cli.Call(ctx, dataDir, "keyvault stats", map[string]any{"name": vault})
		if err != nil {
			return 0, err
		}
		m, ok := out.(map[string]any)
		n, ok2 := m["requests"].(float64)
		if !ok || !ok2 {
			return 0, errors.New("azsim answered stats without a request count")
		}
		return uint64(n), nil
	}
}

type secretFlags map[string]string

func (s secretFlags) String() string { return fmt.Sprint(map[string]string(s)) }
func (s secretFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("--secret %q: write KEY=VALUE", v)
	}
	s[k] = val
	return nil
}
