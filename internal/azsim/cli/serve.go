package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"kvmount.dev/kvmount/internal/azsim"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

var _ flag.Value = (*stringList)(nil)

// serve runs azsim until ctx is cancelled.
func serve(ctx context.Context, dataDir string, args []string, stdout io.Writer) error {
	cfg := azsim.Config{DataDir: dataDir}
	var trust stringList
	var verbose bool
	fs := flag.NewFlagSet("azsim serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:16600", "TLS listener for Key Vault, Entra ID and the admin API")
	fs.DurationVar(&cfg.Latency, "latency", 0, "latency added to every Key Vault request, e.g. 20ms")
	fs.IntVar(&cfg.GetLimit, "get-limit", 4000, "object GETs per vault per 10 s before 429")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "cluster for the pod-identity NMI and `aks pod-identity add`")
	fs.Var(&trust, "trust-ca", "CA file of an external OIDC issuer (repeatable), e.g. the local cluster's")
	fs.StringVar(&cfg.TokenProxyCert, "token-proxy-cert", "", "serving certificate of AKS identity binding's token proxy (issued by the cluster's CA for the server name of its control plane's ID); with --token-proxy-key, the proxy is served")
	fs.StringVar(&cfg.TokenProxyKey, "token-proxy-key", "", "the token proxy certificate's key")
	var nodes stringList
	fs.Var(&nodes, "node-address", "NAME=ADDRESS of a machine (repeatable): one IMDS and one NMI then answer each such caller as machine NAME")
	fs.Float64Var(&cfg.EventRetryScale, "event-retry-scale", 1, "multiply Event Grid's retry schedule, lock and validation times (tests: 0.01 makes the first retry come after 100 ms)")
	fs.BoolVar(&verbose, "v", false, "log every request (never secret values)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "Usage: azsim serve [flags]\n\nFlags:")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil
		}
		return fmt.Errorf("azsim serve: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("azsim serve: unexpected argument %q", fs.Arg(0))
	}
	cfg.TrustCAFiles = trust
	for _, n := range nodes {
		name, addr, ok := strings.Cut(n, "=")
		if !ok || name == "" || net.ParseIP(addr) == nil {
			return fmt.Errorf("azsim serve: --node-address %q: want NAME=IP, e.g. aks-nodepool1-12345678-vmss000000=10.201.0.1", n)
		}
		if cfg.NodeAddresses == nil {
			cfg.NodeAddresses = map[string]string{}
		}
		cfg.NodeAddresses[addr] = name
	}
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	s, err := azsim.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintf(stdout, "azsim serving on %s (data dir %s)\n", s.Addr(), dataDir)
	fmt.Fprintf(stdout, "  tenant:  %s\n  CA:      %s\n  vaults:  https://<name>.%s (dial %s)\n",
		s.TenantID(), s.CAPath(), azsim.VaultDNSSuffix, s.Addr())
	<-ctx.Done()
	fmt.Fprintln(stdout, "azsim stopping")
	return nil
}
