// Command provider-azure is the Azure Key Vault provider for the Secrets
// Store CSI driver: it serves the provider API on a unix socket and answers
// Mount with the files of a SecretProviderClass's Key Vault objects.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"kvmount.dev/kvmount/internal/azure/provider"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "provider-azure:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	var cfg provider.RunConfig
	var overrides, caFiles stringList
	var version bool
	fs := flag.NewFlagSet("provider-azure", flag.ContinueOnError)
	fs.StringVar(&cfg.Endpoint, "endpoint", "unix:///var/run/secrets-store-csi-providers/azure.sock", "unix socket the driver calls")
	fs.StringVar(&cfg.HealthAddr, "healthz-addr", ":8989", "address of /healthz (empty disables)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", ":8898", "address of Prometheus /metrics (empty disables)")
	fs.StringVar(&cfg.CloudName, "cloud-name", "AzurePublicCloud", "cloud used when a SecretProviderClass leaves cloudName empty")
	fs.StringVar(&cfg.CloudEnvFile, "cloud-env-file", "", "AzureStackCloud environment file used when a class leaves cloudEnvFileName empty")
	fs.StringVar(&cfg.NMIEndpoint, "nmi-endpoint", "http://localhost:2579", "aad-pod-identity NMI, for usePodIdentity")
	fs.StringVar(&cfg.IMDSEndpoint, "imds-endpoint", "http://169.254.169.254", "instance metadata service, for useVMManagedIdentity")
	fs.Var(&caFiles, "ca-file", "extra trusted CA (PEM), repeatable; e.g. azsim's")
	fs.Var(&overrides, "host-override", "SUFFIX=HOST:PORT: dial every host under SUFFIX at HOST:PORT (repeatable; private endpoints, azsim)")
	fs.BoolVar(&cfg.SeparateCertKey, "write-cert-and-key-in-separate-files", false, "also write <file>.crt and <file>.key for certificate-backed secrets")
	fs.BoolVar(&cfg.ConstructPEMChain, "construct-pem-chain", true, "order certificate chains leaf → intermediates → root")
	fs.DurationVar(&cfg.CacheTTL, "cache-ttl", 2*time.Minute, "rotation epoch of the node cache: set it to the driver's --rotation-poll-interval (0 disables the cache)")
	fs.StringVar(&cfg.NodeName, "node-name", nodeName(), "this node's name, which offsets the rotation epochs as the driver's --nodeid does (default $KUBE_NODE_NAME, else the host name)")
	fs.IntVar(&cfg.PerVault, "per-vault-concurrency", 16, "concurrent requests per vault")
	fs.DurationVar(&cfg.MountTimeout, "mount-timeout", 100*time.Second, "limit of one Mount; keep it under kubelet's 2m")
	fs.BoolVar(&cfg.JSONLogs, "log-format-json", false, "log JSON instead of text")
	fs.BoolVar(&cfg.Debug, "v", false, "debug logging (never secret values)")
	fs.BoolVar(&version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if version {
		fmt.Printf("{\"version\":%q}\n", provider.Version)
		return nil
	}
	cfg.CAFiles, cfg.HostOverrides = caFiles, overrides
	return provider.Run(ctx, cfg)
}

func nodeName() string {
	if n := os.Getenv("KUBE_NODE_NAME"); n != "" {
		return n
	}
	n, _ := os.Hostname()
	return n
}

type stringList []string

func (s *stringList) String() string     { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
