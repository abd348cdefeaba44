package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"kvmount.dev/kvmount/internal/azure/identity"
	"kvmount.dev/kvmount/internal/azure/provider"
	"kvmount.dev/kvmount/internal/logs"
)

// config is what the flags say: upstream's (v1.8 cmd/main.go) with their
// meaning, then kvmount's own, which win where both set one thing.
type config struct {
	run            provider.RunConfig
	logs           *logs.Options
	version, pprof bool
	healthzPort    int
	promPort       int
	pprofPort      int
	metricsBackend string
	sniName, proxy string
}

const usageHeader = `provider-azure: the Azure Key Vault provider for the Secrets Store CSI driver (kvmount).

It takes the upstream Azure provider's flags with their meaning, so
upstream's DaemonSet runs it unchanged, and kvmount's own (--healthz-addr,
--metrics-addr, --cache-ttl, ...).

Flags:
`

func parse(args []string, out io.Writer) (config, error) {
	var c config
	rc := &c.run
	var overrides, caFiles stringList
	fs := flag.NewFlagSet("provider-azure", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { fmt.Fprint(out, usageHeader); fs.PrintDefaults() }
	c.logs = logs.AddFlags(fs)
	fs.StringVar(&rc.Endpoint, "endpoint", "unix:///var/run/secrets-store-csi-providers/azure.sock", "CSI gRPC endpoint the driver calls")
	fs.StringVar(&rc.CloudName, "cloud-name", "AzurePublicCloud", "default cloud when a SecretProviderClass leaves cloudName empty: AzurePublicCloud, AzureUSGovernmentCloud, AzureChinaCloud, AzureGermanCloud or AzureStackCloud")
	fs.BoolVar(&rc.ConstructPEMChain, "construct-pem-chain", true, "reconstruct a PFX-backed certificate's chain in the order leaf, intermediates, root")
	fs.BoolVar(&rc.SeparateCertKey, "write-cert-and-key-in-separate-files", false, "also write <file>.crt and <file>.key for certificate-backed secrets")
	fs.BoolVar(&rc.OrderPEMSecrets, "order-pem-cert-secrets", false, "kvmount: also rebuild PEM-backed certificate secrets as private key, then leaf → intermediates → root (default: as Key Vault stores them, as upstream)")
	fs.StringVar(&rc.UserAgent, "custom-user-agent", "", "text appended to the User-Agent of Key Vault requests")
	fs.IntVar(&c.healthzPort, "healthz-port", 8989, "port of the health check endpoint")
	fs.StringVar(&rc.HealthPath, "healthz-path", "/healthz", "path of the health check endpoint")
	fs.DurationVar(&rc.HealthTimeout, "healthz-timeout", 5*time.Second, "timeout of the health check's call to the provider's own socket")
	fs.StringVar(&c.metricsBackend, "metrics-backend", "Prometheus", "backend used for metrics: Prometheus (the only one, as upstream)")
	fs.IntVar(&c.promPort, "prometheus-port", 8898, "port of the Prometheus /metrics endpoint")
	fs.BoolVar(&c.pprof, "enable-pprof", false, "serve pprof profiling on localhost:--pprof-port")
	fs.IntVar(&c.pprofPort, "pprof-port", 6060, "port for pprof profiling")
	fs.StringVar(&c.proxy, "token-proxy-url", "", "URL of the AKS token proxy for identity binding (default: the in-cluster API server)")
	fs.StringVar(&c.sniName, "sni-name", "", "TLS server name for the identity binding proxy (default: computed from the API server's serving certificate)")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	// kvmount's own.
	fs.StringVar(&rc.HealthAddr, "healthz-addr", "", "kvmount: address of the health endpoint (overrides --healthz-port; \"none\" disables)")
	fs.StringVar(&rc.MetricsAddr, "metrics-addr", "", "kvmount: address of /metrics (overrides --prometheus-port; \"none\" disables)")
	fs.StringVar(&rc.CloudEnvFile, "cloud-env-file", os.Getenv("AZURE_ENVIRONMENT_FILEPATH"), "kvmount: AzureStackCloud environment file for classes without cloudEnvFileName (default $AZURE_ENVIRONMENT_FILEPATH, as upstream)")
	fs.StringVar(&rc.NMIEndpoint, "nmi-endpoint", "http://localhost:2579", "kvmount: aad-pod-identity's NMI, for usePodIdentity")
	fs.StringVar(&rc.IMDSEndpoint, "imds-endpoint", identity.DefaultIMDS, "kvmount: the instance metadata service, for useVMManagedIdentity")
	fs.Var(&caFiles, "ca-file", "kvmount: extra trusted CA (PEM), repeatable; e.g. azsim's")
	fs.Var(&overrides, "host-override", "kvmount: SUFFIX=HOST:PORT: dial every host under SUFFIX at HOST:PORT (repeatable; private endpoints, azsim)")
	fs.DurationVar(&rc.CacheTTL, "cache-ttl", 2*time.Minute, "kvmount: rotation epoch of the node cache; set it to the driver's --rotation-poll-interval (0 disables the cache)")
	fs.StringVar(&rc.NodeName, "node-name", nodeName(), "kvmount: this node's name, which offsets the rotation epochs as the driver's --nodeid does (default $KUBE_NODE_NAME, else the host name)")
	fs.IntVar(&rc.PerVault, "per-vault-concurrency", 16, "kvmount: concurrent requests per vault")
	fs.DurationVar(&rc.MountTimeout, "mount-timeout", 100*time.Second, "kvmount: limit of one Mount; keep it under kubelet's 2m")
	fs.StringVar(&rc.Kubeconfig, "kubeconfig", "", "kvmount: kubeconfig for recording SecretProviderClass warnings as pod Events (default: the pod's service account, if any)")
	fs.BoolVar(&rc.NoEvents, "no-events", false, "kvmount: log SecretProviderClass warnings only, never as pod Events (the SecretSync controller's provider, whose \"pod\" is the controller's, sets it)")
	if err := fs.Parse(logs.NormalizeArgs(args)); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (flags are written --name=value)", fs.Arg(0))
	}
	if !strings.EqualFold(c.metricsBackend, "prometheus") {
		return c, fmt.Errorf("--metrics-backend %q: unsupported metrics backend (Prometheus is the only one, as upstream)", c.metricsBackend)
	}
	rc.CAFiles, rc.HostOverrides = caFiles, overrides
	rc.HealthAddr = addr(rc.HealthAddr, c.healthzPort)
	rc.MetricsAddr = addr(rc.MetricsAddr, c.promPort)
	if c.pprof {
		rc.PProfPort = c.pprofPort
	}
	rc.TokenProxyURL, rc.SNIName = c.proxy, c.sniName
	return c, nil
}

// addr is a kvmount address flag if given, else upstream's port on all
// interfaces, as upstream listens.
func addr(explicit string, port int) string {
	switch explicit {
	case "none":
		return ""
	case "":
		return ":" + strconv.Itoa(port)
	}
	return explicit
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
