package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"kvmount.dev/kvmount/internal/clusterbench"
)

// benchCluster is `kvmount bench cluster`: a local environment of N nodes,
// P pods per node, then R rotation polls; the cost to the API server, Key
// Vault and token issuance, and per-node memory and CPU.
func benchCluster(ctx context.Context, args []string, out io.Writer) error {
	var cfg clusterbench.Config
	var format string
	fs := flag.NewFlagSet("kvmount bench cluster", flag.ContinueOnError)
	fs.IntVar(&cfg.Nodes, "nodes", 5, "nodes (each a kubelet with its own driver and provider)")
	fs.IntVar(&cfg.PodsPerNode, "pods", 10, "pods per node")
	fs.IntVar(&cfg.Classes, "classes", 2, "SecretProviderClasses, pods spread over them")
	fs.IntVar(&cfg.Identities, "identities", 2, "user-assigned identities of the node pool (class c uses identity c mod N)")
	fs.IntVar(&cfg.Objects, "objects", 10, "secrets per class")
	fs.IntVar(&cfg.Polls, "polls", 3, "rotation polls measured")
	fs.IntVar(&cfg.Changes, "change", 1, "objects given a new version before each poll")
	fs.DurationVar(&cfg.PollInterval, "poll-interval", 10*time.Second, "the drivers' --rotation-poll-interval")
	fs.DurationVar(&cfg.KeyVaultLatency, "kv-latency", 20*time.Millisecond, "latency added to every Key Vault request")
	fs.BoolVar(&cfg.Push, "push", false, "push mode: the drivers poll hourly and --polls changes come as Key Vault's events (azsim's Event Grid to the sync controller's webhook); reports the time to every pod and the reads and writes per change")
	fs.StringVar(&cfg.Dir, "dir", "/var/lib/kvmount/bench", "state directory, emptied first")
	fs.StringVar(&format, "o", "table", "output: table or json")
	var jsonOut string
	var keep bool
	fs.BoolVar(&keep, "keep-dir", false, "keep the state directory (the processes' logs) after the run")
	fs.StringVar(&jsonOut, "json-out", "", "also write the report as JSON to this file")
	pos, err := parseVerb(fs, args, out, "kvmount bench cluster [--nodes N] [--pods P] [--classes C] [--identities I] [--objects O] [--polls R] [--change K] [--push] [-o table|json]")
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	if cfg.Nodes < 1 || cfg.Nodes > maxNodes {
		return fmt.Errorf("--nodes %d: choose between 1 and %d", cfg.Nodes, maxNodes)
	}
	if format != "table" && format != "json" {
		return fmt.Errorf("%w: -o %q: use table or json", errUsage, format)
	}
	if os.Geteuid() != 0 {
		return errors.New("bench cluster runs kubelets: run it as root")
	}
	progress := newProgress(os.Stderr)
	binDir, err := ensureBins(ctx, progress)
	if err != nil {
		progress.close()
		return err
	}
	if err := fresh(cfg.Dir); err != nil {
		progress.close()
		return err
	}
	cfg.BinDir, cfg.Logf = binDir, progress.step
	rep, err := clusterbench.Run(ctx, cfg)
	progress.close()
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(cfg.Dir)
	}
	if jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if format == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.Print(out)
	return nil
}
