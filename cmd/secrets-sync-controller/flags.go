package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"kvmount.dev/kvmount/internal/logs"
)

// config is what the flags say: upstream's sync controller's flags with
// their meaning (--provider-volume, --token-request-audience,
// --rotation-poll-interval, --leader-elect, --health-probe-bind-address,
// --metrics-bind-address, --max-call-recv-msg-size), then kvmount's own.
type config struct {
	providerDir, audiences, healthAddr, metricsAddr, kubeconfig string
	poll                                                        time.Duration
	leaderElect, version                                        bool
	maxRecvMsg                                                  int
	logs                                                        *logs.Options

	// kvmount's own.
	name, namespace, podName, podUID     string
	workers, vaultBurst, burst           int
	vaultQPS, qps                        float64
	partial, repairDrift                 bool
	providerTimeout, lease, renew, retry time.Duration
	events                               eventsConfig
}

// eventsConfig is where Key Vault's events come from (events.go).
type eventsConfig struct {
	webhookAddr, tlsCert, tlsKey, audiences, keyFile string
	endpoint, topic, subscription                    string
	tenant, clientID, tokenFile, authority           string
	caFiles, overrides                               stringList
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

const usageHeader = `secrets-sync-controller: kvmount's SecretSync controller (secret-sync.x-k8s.io/v1alpha1).

It keeps each SecretSync's Secret filled from a secret store through a
provider running beside it (its socket in --provider-volume), without a pod.
It takes the flags of kubernetes-sigs/secrets-store-sync-controller with
their meaning.

Flags:
`

func parse(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("secrets-sync-controller", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { fmt.Fprint(out, usageHeader); fs.PrintDefaults() }
	c.logs = logs.AddFlags(fs)
	fs.StringVar(&c.providerDir, "provider-volume", "/provider", "directory of the provider sockets (<dir>/<provider>.sock)")
	fs.StringVar(&c.audiences, "token-request-audience", "api://AzureADTokenExchange,api://AKSIdentityBinding", "comma-separated audiences of the service-account tokens minted for each SecretSync (one TokenRequest each, 600 s)")
	fs.DurationVar(&c.poll, "rotation-poll-interval", 2*time.Minute, "how often each SecretSync is synced again (0 disables polling); each at its own offset")
	fs.BoolVar(&c.leaderElect, "leader-elect", false, "elect one active replica with a Lease (the others keep warm caches and take over)")
	fs.StringVar(&c.healthAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz (empty: none)")
	fs.StringVar(&c.metricsAddr, "metrics-bind-address", ":8085", "address of /metrics (empty or 0: none)")
	fs.IntVar(&c.maxRecvMsg, "max-call-recv-msg-size", 4<<20, "maximum size in bytes of a provider's gRPC response")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "path to a kubeconfig; only required out of cluster")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	fs.StringVar(&c.name, "secret-sync-controller-name", "", "kvmount: sync the SecretSyncs whose spec.secretSyncControllerName is this (empty: the default controller's), so that several controllers share a cluster")
	fs.StringVar(&c.namespace, "namespace", os.Getenv("SYNC_CONTROLLER_POD_NAMESPACE"), "kvmount: the controller's namespace, for its Lease (default $SYNC_CONTROLLER_POD_NAMESPACE)")
	fs.StringVar(&c.podName, "pod-name", os.Getenv("SYNC_CONTROLLER_POD_NAME"), "kvmount: the controller's pod, sent to the provider as the pod and its lease identity (default $SYNC_CONTROLLER_POD_NAME)")
	fs.StringVar(&c.podUID, "pod-uid", os.Getenv("SYNC_CONTROLLER_POD_UID"), "kvmount: the controller pod's UID (default $SYNC_CONTROLLER_POD_UID)")
	fs.IntVar(&c.workers, "workers", 8, "kvmount: SecretSyncs synced at once")
	fs.Float64Var(&c.vaultQPS, "per-vault-qps", 20, "kvmount: provider calls per second per vault (class parameter keyvaultName, else the provider): a restart does not hit a vault with everything at once")
	fs.IntVar(&c.vaultBurst, "per-vault-burst", 40, "kvmount: burst of provider calls per vault")
	fs.BoolVar(&c.partial, "partial-sync", true, "kvmount: when some files of a SecretSync do not come, write the others and keep the missing keys' last values (the Arc extension's enablePartialSecretSync); false writes nothing until all come")
	fs.BoolVar(&c.repairDrift, "repair-drift", true, "kvmount: watch the Secrets the controller owns and restore them when edited or deleted (needs RBAC to read Secrets)")
	fs.DurationVar(&c.providerTimeout, "provider-timeout", 60*time.Second, "kvmount: limit of one provider call")
	fs.DurationVar(&c.lease, "leader-elect-lease-duration", 15*time.Second, "kvmount: how long a standby waits before taking a lease its holder stopped renewing")
	fs.DurationVar(&c.renew, "leader-elect-renew-deadline", 10*time.Second, "kvmount: how long the leader tries to renew before giving up the lead")
	fs.DurationVar(&c.retry, "leader-elect-retry-period", 2*time.Second, "kvmount: how often candidates try to take or renew the lease")
	fs.Float64Var(&c.qps, "kube-api-qps", 50, "kvmount: requests per second to the API server")
	fs.IntVar(&c.burst, "kube-api-burst", 100, "kvmount: burst of requests to the API server")
	addEventFlags(fs, &c.events)
	if err := fs.Parse(logs.NormalizeArgs(args)); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (flags are written --name=value)", fs.Arg(0))
	}
	if c.version {
		return c, nil
	}
	if c.leaderElect && (c.namespace == "" || c.podName == "") {
		return c, fmt.Errorf("--leader-elect needs the controller's namespace and pod name: set SYNC_CONTROLLER_POD_NAMESPACE and SYNC_CONTROLLER_POD_NAME from the downward API, or --namespace and --pod-name")
	}
	if len(c.audienceList()) == 0 {
		return c, fmt.Errorf("--token-request-audience is empty: name the audiences the providers need (api://AzureADTokenExchange for Azure workload identity)")
	}
	if c.metricsAddr == "0" {
		c.metricsAddr = ""
	}
	return c, c.events.check()
}

func (c config) audienceList() []string {
	var out []string
	for _, a := range strings.Split(c.audiences, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}
