// Package clusterbench measures what kvmount costs a cluster: it starts a
// local environment of N nodes (kubelets on the fake runtime, each with its
// own driver and provider process), mounts P pods per node with a mix of
// classes, identities and objects, then runs R rotation polls with some
// objects changing, and reports the three shared budgets an operator plans
// with — the API server's requests (from its own audit log), Key Vault's
// reads (from azsim's counters, against the unique (node, principal,
// object) count) and token issuance (Entra ID, IMDS, NMI) — plus each
// node's driver and provider memory and CPU.
package clusterbench

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/localcluster"
	"kvmount.dev/kvmount/internal/localenv"
)

// Config is one run.
type Config struct {
	Nodes, PodsPerNode int
	// Classes are SecretProviderClasses, each of Objects secrets, pods
	// spread over them; Identities are user-assigned identities of the
	// node pool, class c using identity c mod Identities.
	Classes, Identities, Objects int
	// Polls are the rotation polls measured; Changes objects get a new
	// version before each.
	Polls, Changes int
	// PollInterval is the driver's --rotation-poll-interval (default 10s).
	PollInterval time.Duration
	// KeyVaultLatency is added to every Key Vault request.
	KeyVaultLatency time.Duration
	// Push measures Key Vault's events instead of polls: the drivers poll
	// hourly, and Polls changes are pushed through azsim's Event Grid to
	// the sync controller's webhook (push.go).
	Push   bool
	Dir    string               `json:"-"`
	BinDir string               `json:"-"`
	Logf   func(string, ...any) `json:"-"`
}

// Report is what a run measured.
type Report struct {
	Config Config `json:"config"`
	// Mount phase.
	Pods          int     `json:"pods"`
	AllMountedSec float64 `json:"allMountedSeconds"`
	P50Sec        float64 `json:"p50Seconds"`
	P95Sec        float64 `json:"p95Seconds"`
	MaxSec        float64 `json:"maxSeconds"`
	// MountRequests are the drivers' API requests while mounting, by
	// "verb resource"; per pod in MountRequestsPerPod.
	MountRequests       map[string]int   `json:"mountRequests"`
	MountRequestsPerPod float64          `json:"mountRequestsPerPod"`
	MountKVReads        uint64           `json:"mountKeyVaultReads"`
	MountTokens         azsim.TokenStats `json:"mountTokens"`
	// Poll phase, per poll.
	PollRequests map[string]float64 `json:"pollRequestsPerPoll"`
	PollWrites   float64            `json:"pollWritesPerPoll"`
	PollKVReads  float64            `json:"pollKeyVaultReadsPerPoll"`
	// PollKVReadsTotal were made over PollWindowSec, which spans
	// PollEpochs rotation epochs (begun or partial).
	PollKVReadsTotal uint64           `json:"pollKeyVaultReadsTotal"`
	PollWindowSec    float64          `json:"pollWindowSeconds"`
	PollEpochs       int              `json:"pollEpochs"`
	UniquePairs      int              `json:"uniqueNodePrincipalObjects"`
	PollTokens       azsim.TokenStats `json:"pollTokens"`
	RotationSec      float64          `json:"rotationSeconds"`
	StatusObjects    int              `json:"statusObjects"`
	DriverRSSMiB     []float64        `json:"driverRSSMiB"`
	ProviderRSSMiB   []float64        `json:"providerRSSMiB"`
	DriverCPUPct     []float64        `json:"driverCPUPercentDuringPolls"`
	ProviderCPUPct   []float64        `json:"providerCPUPercentDuringPolls"`
	StartSec         float64          `json:"environmentStartSeconds"`
	// Push is push mode's report (Config.Push).
	Push             *PushReport `json:"push,omitempty"`
	TokenDefinitions string      `json:"tokenNote"`
}

func (c *Config) defaults() {
	if c.Nodes < 1 {
		c.Nodes = 1
	}
	if c.PodsPerNode < 1 {
		c.PodsPerNode = 1
	}
	c.Classes, c.Identities, c.Objects = max(c.Classes, 1), max(c.Identities, 1), max(c.Objects, 1)
	c.Identities = min(c.Identities, c.Classes)
	if c.PollInterval == 0 {
		c.PollInterval = 10 * time.Second
	}
	if c.Push {
		// The poll is the safety net: it must not bring the change.
		c.PollInterval = time.Hour
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	c.Changes = min(c.Changes, c.Objects)
}

// class is the class of node's pod j: round-robin over all pods, so that
// each node mounts as many classes (and identities) as it can.
func (c Config) class(node, j int) int { return (node*c.PodsPerNode + j) % c.Classes }

const vault = "bench-kv"

var spcpsGVR = schema.GroupVersionResource{Group: "secrets-store.csi.x-k8s.io", Version: "v1", Resource: "secretproviderclasspodstatuses"}

// Run starts the environment, measures, stops it and reports.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg.defaults()
	rep := Report{Config: cfg, TokenDefinitions: "token requests azsim answered: Entra ID token endpoint, IMDS and NMI token paths"}
	start := time.Now()
	env, err := localenv.Start(ctx, localenv.Config{Dir: cfg.Dir, BinDir: cfg.BinDir, Nodes: cfg.Nodes, Runtime: localcluster.RuntimeFake,
		SyncFrequency: min(5*time.Second, cfg.PollInterval/2), RotationPollInterval: cfg.PollInterval, KeyVaultLatency: cfg.KeyVaultLatency, Logf: cfg.Logf})
	if err != nil {
		return rep, err
	}
	defer env.Stop()
	rep.StartSec = time.Since(start).Seconds()
	b := &bench{cfg: cfg, env: env, rep: &rep}
	defer func() {
		if b.controller != nil {
			b.controller.Stop()
		}
	}()
	if err := b.setup(ctx); err != nil {
		return rep, err
	}
	if err := b.mountPhase(ctx); err != nil {
		return rep, err
	}
	if cfg.Push {
		return rep, b.pushPhase(ctx)
	}
	return rep, b.pollPhase(ctx)
}

type bench struct {
	cfg  Config
	env  *localenv.Env
	rep  *Report
	kube kubernetes.Interface
	dyn  dynamic.Interface
	// controller is push mode's sync controller.
	controller *localcluster.Process
	// classOf is each pod's class, by pod name.
	classOf map[string]int
	pods    []corev1.Pod
}
