// Package csi is the Secrets Store CSI node plugin: the CSI Identity and
// Node services kubelet calls, and kubelet's plugin registration, so one
// container per node does what upstream needs three for. Only what is
// implemented is advertised: no Controller service, no stage/unstage
// (kubelet never stages ephemeral inline volumes).
package csi

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/dynamic"

	"kvmount.dev/kvmount/internal/epoch"
	"kvmount.dev/kvmount/internal/events"
	"kvmount.dev/kvmount/internal/lru"
	"kvmount.dev/kvmount/internal/providers"
	"kvmount.dev/kvmount/internal/refresh"
)

// DriverName is the CSI driver name of the Secrets Store CSI driver.
const DriverName = "secrets-store.csi.k8s.io"

// Config configures the node plugin.
type Config struct {
	DriverName string
	NodeID     string
	// Providers calls provider plugins.
	Providers *providers.Clients
	// Dynamic reaches the API server; the typed clientset is avoided on
	// purpose, as it would register every API group and cost memory.
	Dynamic dynamic.Interface
	// Classes reads SecretProviderClasses from a watch-fed cache; nil
	// reads each from the API server.
	Classes *Classes
	// RotationPollInterval is the rotation epoch: each mounted volume is
	// refreshed once per epoch, at kubelet's first republish in it.
	RotationPollInterval time.Duration
	// Rotation enables refreshes on republish; without it a mounted volume
	// keeps its files (upstream's --enable-secret-rotation=false).
	Rotation bool
	// MaxPayload is the largest provider response the driver accepts
	// (--max-call-recv-msg-size); each volume's tmpfs is sized from it.
	// Zero leaves tmpfs's default size.
	MaxPayload int
	// ProviderTimeout bounds one provider Mount, below kubelet's 2m.
	ProviderTimeout time.Duration
	Logger          *slog.Logger
	Metrics         *Metrics
	Version         string
	Now             func() time.Time
}

// Driver implements the CSI Identity and Node services.
type Driver struct {
	cfg    Config
	clock  epoch.Clock
	events *events.Recorder

	mu      sync.Mutex // guards volumes, and each volume's refs, dropped, last and pending
	volumes map[string]*volume
	// pushes bounds the pushed refreshes running at once (push.go).
	pushes chan struct{}
	// seen is when the node first saw each change, by ID (push.go).
	seen *lru.Cache[string, time.Time]
	// reports are what pushed refreshes leave to tell (report.go).
	reports reporter
	// registered is kubelet's last registration verdict.
	registered atomic.Bool
}

// volume is what the driver remembers of one published volume. Its mutex
// serialises publishes of the volume (kubelet may retry while one runs)
// and the pruning of its retired payloads. The driver keeps it only while
// the volume is mounted: a failed first mount or an unpublish drops it
// (release), so the map does not grow with pods that never mounted.
type volume struct {
	mu sync.Mutex
	// refs counts the calls holding or waiting for mu; Driver.mu guards
	// it.
	refs int
	// lastSuccess is the end of the last successful provider call; the
	// volume is refreshed when the rotation epoch has moved past it.
	lastSuccess time.Time
	versions    map[string]string
	statusDone  bool
	// statusRV is the resource version of the status object this driver
	// last wrote.
	statusRV string
	// warnedAttrs: the pod was told once that its extra volumeAttributes
	// are ignored.
	warnedAttrs bool
	// dropped: the last call to finish left the volume unmounted; the
	// state goes when no call holds it any more. Driver.mu guards it.
	dropped bool
	// last is kubelet's last successful publish of the volume, which a
	// pushed refresh repeats (with the pod's current tokens); pending is
	// the refresh queued for it. Driver.mu guards both.
	last    *mountRequest
	pending *refresh.Request
}

// New returns a Driver.
func New(cfg Config) *Driver {
	if cfg.DriverName == "" {
		cfg.DriverName = DriverName
	}
	if cfg.RotationPollInterval == 0 {
		cfg.RotationPollInterval = 2 * time.Minute
	}
	if cfg.ProviderTimeout == 0 {
		cfg.ProviderTimeout = 100 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Classes == nil {
		cfg.Classes = &Classes{dyn: cfg.Dynamic}
	}
	d := &Driver{cfg: cfg, clock: epoch.ForNode(cfg.NodeID, cfg.RotationPollInterval), volumes: map[string]*volume{},
		pushes: make(chan struct{}, maxPushes), seen: lru.New[string, time.Time](4096, time.Hour, cfg.Now)}
	d.reports.d = d
	d.events = events.New(events.Config{Dynamic: cfg.Dynamic, Component: "secrets-store-csi-driver", Instance: cfg.NodeID, Now: cfg.Now, Logger: cfg.Logger})
	cfg.Classes.Notify(cfg.Logger, d.classChanged)
	return d
}

// acquire returns the state of volume id (creating it), locked.
func (d *Driver) acquire(id string) *volume {
	d.mu.Lock()
	v, ok := d.volumes[id]
	if !ok {
		v = &volume{}
		d.volumes[id] = v
	}
	v.refs++
	d.mu.Unlock()
	v.mu.Lock()
	return v
}

// release unlocks v; unless keep, its state is dropped once no other call
// holds or waits for it (a later call starts afresh).
func (d *Driver) release(id string, v *volume, keep bool) {
	v.mu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	v.refs--
	v.dropped = !keep
	if v.dropped && v.refs == 0 && d.volumes[id] == v {
		delete(d.volumes, id)
	}
}

// remember keeps m as the volume's last successful publish.
func (d *Driver) remember(v *volume, m mountRequest) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v.last = &m
}

// tracked is the number of volumes the driver keeps state for.
func (d *Driver) tracked() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.volumes)
}

// due reports whether a mounted volume's refresh is due: rotation is on
// and the epoch has moved on since its last successful provider call (or
// there was none since this process started).
func (d *Driver) due(v *volume) bool {
	if !d.cfg.Rotation {
		return false
	}
	return v.lastSuccess.IsZero() || d.clock.Of(d.cfg.Now()) > d.clock.Of(v.lastSuccess)
}
