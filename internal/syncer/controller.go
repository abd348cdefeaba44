// Package syncer is kvmount's SecretSync controller: it keeps each
// SecretSync's Secret (secret-sync.x-k8s.io/v1alpha1, upstream's API) filled
// from a secret store, without a pod, through the same provider API the
// CSI driver uses, with the provider running beside it.
//
// For each SecretSync it reads the class, mints the service account's
// tokens (TokenRequest, the configured audiences, 600 s), asks the provider
// for the files as upstream's controller does, maps files to keys and
// writes the Secret only when something differs from what is there. Beyond
// upstream's controller, it watches the Secrets it owns (an edit or a
// deletion is repaired) and the classes (a change applies at once), polls
// with jitter under a per-vault budget, serves SecretSyncs that share a
// (namespace, class, service account) with one provider call, never adopts
// or deletes a Secret, and says in conditions, Events and metrics what went
// wrong and how to fix it. One replica works at a time (a Lease); the
// others keep their caches warm to take over.
package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	spcv1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	ssv1 "kvmount.dev/kvmount/internal/apis/secretsync/v1alpha1"
	"kvmount.dev/kvmount/internal/events"
	"kvmount.dev/kvmount/internal/lru"
	"kvmount.dev/kvmount/internal/providers"
	"kvmount.dev/kvmount/internal/refresh"
)

// Config configures the controller.
type Config struct {
	// Name is the controller's --secret-sync-controller-name: it syncs
	// the SecretSyncs whose spec.secretSyncControllerName equals it ("" is
	// the default controller's, as upstream's).
	Name string
	// Namespace is where the controller runs (its Lease).
	Namespace string
	// PodName and PodUID are the controller's pod, sent to the provider as
	// the pod of the mount, as upstream's controller does.
	PodName, PodUID string
	// Audiences are the service-account token audiences minted for each
	// SecretSync (--token-request-audience), TokenLifetime their lifetime
	// (600 s, which the chart's admission policy pins).
	Audiences     []string
	TokenLifetime time.Duration
	// Providers reaches the provider sockets; ProviderTimeout bounds a call.
	Providers       *providers.Clients
	ProviderTimeout time.Duration
	// PollInterval re-syncs every SecretSync (0: never), each at its own
	// offset within the interval.
	PollInterval time.Duration
	// VaultQPS and VaultBurst budget provider calls per vault (class
	// parameter keyvaultName, else the provider).
	VaultQPS   float64
	VaultBurst int
	// Workers sync SecretSyncs concurrently.
	Workers int
	// PartialSync writes the keys whose files came when others did not,
	// keeping the missing keys' last values (the Arc extension's
	// enablePartialSecretSync); off, nothing is written until every file
	// comes.
	PartialSync bool
	// RepairDrift watches the Secrets the controller owns and restores
	// them when someone edits or deletes them (it needs RBAC to read
	// Secrets).
	RepairDrift bool
	// LeaderElect runs one active replica at a time (a Lease named
	// LeaseName in Namespace).
	LeaderElect bool
	LeaseName   string
	Leases      LeaseTimes

	Logger  *slog.Logger
	Metrics *Metrics
	Now     func() time.Time
}

// LeaseTimes tune leader election (client-go's meaning).
type LeaseTimes struct {
	Duration, RenewDeadline, RetryPeriod time.Duration
}

// Clients reach the API server. Dynamic serves SecretSyncs and classes
// (and Events); Core Secrets and TokenRequests; Leases the election.
type Clients struct {
	Dynamic dynamic.Interface
	Core    corev1client.CoreV1Interface
	Leases  coordinationv1.LeasesGetter
}

// Controller syncs SecretSyncs.
type Controller struct {
	cfg     Config
	kube    Clients
	events  *events.Recorder
	queue   workqueue.TypedRateLimitingInterface[string]
	tokens  *tokens
	calls   *calls
	budgets *budgets

	ssInformer, spcInformer, secretInformer cache.SharedIndexInformer

	mu     sync.Mutex // guards states
	states map[string]*state
	// seen is when the controller first saw each change, by ID.
	seen   *lru.Cache[string, time.Time]
	active chan struct{} // closed once this replica leads (or without election)
}

// state is what the controller keeps of one SecretSync between syncs.
type state struct {
	// since is the earliest need not yet met: only a provider answer from
	// a call started at or after it may serve the next sync.
	since time.Time
	// fresh: the next sync may be served by no cache (a first sync, a
	// spec or class change, a forced sync).
	fresh bool
	// changes are objects Key Vault announced new versions of since the
	// last sync: read afresh, the others served as synced.
	changes []refresh.Change
	// versions are the objects' versions of the last sync, sent on polls
	// so that the provider may serve them from its cache (a rotation).
	versions map[string]string
	// applied digests the Secret last written or seen up to date: a
	// Secret event carrying it is the controller's own.
	applied string
	// foreign: a Secret of the name exists that is not the SecretSync's
	// (the cache holds only the controller's own Secrets): the next sync
	// reads it instead of trying a create that would fail.
	foreign bool
	poll    *time.Timer
}

// New returns a controller; Run starts it.
func New(cfg Config, kube Clients) *Controller {
	cfg = withDefaults(cfg)
	c := &Controller{cfg: cfg, kube: kube, states: map[string]*state{}, active: make(chan struct{}), seen: lru.New[string, time.Time](4096, time.Hour, cfg.Now)}
	c.events = events.New(events.Config{Dynamic: kube.Dynamic, Component: "secrets-store-sync-controller", Instance: cfg.PodName, Now: cfg.Now, Logger: cfg.Logger})
	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, maxBackoff(cfg.PollInterval))),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "secretsync"})
	c.tokens = newTokens(kube.Core, cfg.Audiences, cfg.TokenLifetime, cfg.Now)
	c.calls = newCalls(cfg.Now, linger)
	c.budgets = newBudgets(cfg.VaultQPS, cfg.VaultBurst)
	c.informers()
	return c
}

func withDefaults(cfg Config) Config {
	if cfg.TokenLifetime == 0 {
		cfg.TokenLifetime = 600 * time.Second
	}
	if cfg.ProviderTimeout == 0 {
		cfg.ProviderTimeout = 60 * time.Second
	}
	if cfg.Workers == 0 {
		cfg.Workers = 8
	}
	if cfg.VaultQPS == 0 {
		cfg.VaultQPS, cfg.VaultBurst = 20, 40
	}
	if cfg.LeaseName == "" {
		cfg.LeaseName = "secrets-store-sync-controller"
		if cfg.Name != "" {
			cfg.LeaseName += "-" + cfg.Name
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg
}

// maxBackoff bounds the retry delay of a failing SecretSync: at most the
// poll interval, at most five minutes.
func maxBackoff(poll time.Duration) time.Duration {
	if poll > 0 && poll < 5*time.Minute {
		return poll
	}
	return 5 * time.Minute
}

// spcIndex indexes SecretSyncs by the class they name (namespace/name).
const spcIndex = "secretProviderClass"

// informers watches SecretSyncs, classes and (with RepairDrift) the
// Secrets the controller owns: the only Secrets it lists are those with
// its label.
func (c *Controller) informers() {
	f := dynamicinformer.NewDynamicSharedInformerFactory(c.kube.Dynamic, 0)
	c.ssInformer = f.ForResource(ssv1.Resource).Informer()
	c.spcInformer = f.ForResource(spcv1.SecretProviderClassResource).Informer()
	for _, inf := range []cache.SharedIndexInformer{c.ssInformer, c.spcInformer} {
		_ = inf.SetTransform(dropManagedFields)
	}
	_ = c.ssInformer.AddIndexers(cache.Indexers{spcIndex: func(obj any) ([]string, error) {
		u := obj.(*unstructured.Unstructured)
		name, _, _ := unstructured.NestedString(u.Object, "spec", "secretProviderClassName")
		return []string{u.GetNamespace() + "/" + name}, nil
	}})
	_, _ = c.ssInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: c.ssAdded, UpdateFunc: c.ssUpdated, DeleteFunc: c.ssDeleted})
	_, _ = c.spcInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: c.spcChanged, UpdateFunc: c.spcUpdated, DeleteFunc: c.spcChanged})
	if c.cfg.RepairDrift {
		lw := cache.NewFilteredListWatchFromClient(c.kube.Core.RESTClient(), "secrets", corev1.NamespaceAll, func(o *metav1.ListOptions) { o.LabelSelector = ssv1.ManagedLabel })
		c.secretInformer = cache.NewSharedIndexInformer(lw, &corev1.Secret{}, 0, cache.Indexers{})
		_, _ = c.secretInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{UpdateFunc: func(_, o any) { c.secretChanged(o) }, DeleteFunc: c.secretChanged})
	}
}

// dropManagedFields keeps managed fields out of the caches: most of a small
// object's bytes, never read (the owned Secrets keep theirs: they say
// which keys this controller applied).
func dropManagedFields(obj any) (any, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		u.SetManagedFields(nil)
	}
	return obj, nil
}

// Run starts the caches, takes the lead (with LeaderElect) and syncs until
// ctx ends; it returns an error when leadership is lost, so that the
// process restarts as a standby.
func (c *Controller) Run(ctx context.Context) error {
	for _, inf := range c.caches() {
		go inf.Run(ctx.Done())
	}
	if !cache.WaitForCacheSync(ctx.Done(), c.synced) {
		return fmt.Errorf("caches not synced: %w", ctx.Err())
	}
	if !c.cfg.LeaderElect {
		return c.work(ctx)
	}
	return c.lead(ctx)
}

func (c *Controller) caches() []cache.SharedIndexInformer {
	out := []cache.SharedIndexInformer{c.ssInformer, c.spcInformer}
	if c.secretInformer != nil {
		out = append(out, c.secretInformer)
	}
	return out
}

// Synced reports whether every cache holds its first list.
func (c *Controller) Synced() bool { return c.synced() }

func (c *Controller) synced() bool {
	for _, inf := range c.caches() {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// work runs the workers until ctx ends.
func (c *Controller) work(ctx context.Context) error {
	c.cfg.Logger.Info("syncing SecretSyncs", "workers", c.cfg.Workers, "controllerName", c.cfg.Name)
	close(c.active)
	var wg sync.WaitGroup
	for range c.cfg.Workers {
		wg.Go(func() {
			for c.next(ctx) {
			}
		})
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	c.stopPolls()
	return nil
}

// next syncs one queued SecretSync; false once the queue is shut down.
func (c *Controller) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	err := c.sync(ctx, key)
	var retry *retryLater
	switch {
	case err == nil:
		c.queue.Forget(key)
	case errors.As(err, &retry):
		c.queue.AddRateLimited(key)
	default:
		// A problem only a change fixes (the SecretSync, its class, its
		// service account): the change's event queues it again, and the
		// poll retries meanwhile.
		c.queue.Forget(key)
	}
	return true
}

// retryLater is a failure worth retrying with backoff (the API server, the
// provider, the store being unavailable).
type retryLater struct{ err error }

func (e *retryLater) Error() string { return e.err.Error() }
func (e *retryLater) Unwrap() error { return e.err }

// ClassInformer is the controller's SecretProviderClass cache, which the
// change feed shares (it adds an index before Run starts it).
func (c *Controller) ClassInformer() cache.SharedIndexInformer { return c.spcInformer }

// Active is closed once this replica syncs (it leads, or there is no
// election).
func (c *Controller) Active() <-chan struct{} { return c.active }

// decode converts a cached unstructured object.
func decode[T any](obj any) (*T, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("unexpected %T in cache", obj)
	}
	var out T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
