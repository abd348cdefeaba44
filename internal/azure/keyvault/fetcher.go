// Package keyvault fetches a mount's objects from Azure Key Vault and
// renders them as files. It is built for many pods per node: one long-lived
// SDK client per (vault, credential), so tokens and Key Vault's challenge are
// cached; a mount's objects fetched in parallel with a bound per vault;
// identical in-flight reads coalesced across mounts; and a short-lived
// node-level cache keyed by principal, consulted only after the mount's own
// identity produced a token for that principal.
package keyvault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"kvmount.dev/kvmount/internal/azure/config"
	"kvmount.dev/kvmount/internal/azure/identity"
)

// Options tune the fetcher.
type Options struct {
	// HTTPClient carries Key Vault traffic.
	HTTPClient *http.Client
	// CacheTTL is how long a fetched object version is served to other
	// mounts of the same principal; zero disables the cache.
	CacheTTL time.Duration
	// PerVault bounds concurrent requests to one vault (default 16).
	PerVault int
	// SeparateCertKey also writes <file>.crt and <file>.key for
	// certificate-backed secrets (--write-cert-and-key-in-separate-files).
	SeparateCertKey bool
	// KeepPEMOrder writes a certificate's chain in Key Vault's order
	// instead of leaf → intermediates → root (--construct-pem-chain=false).
	KeepPEMOrder bool
	Now          func() time.Time
}

// Stats are the fetcher's counters, for metrics and benchmarks.
type Stats struct {
	// Requests counts calls to Key Vault (GETs and version lists).
	Requests atomic.Uint64
	// CacheHits counts reads served from the node cache.
	CacheHits atomic.Uint64
	// Coalesced counts reads that joined an identical one in flight.
	Coalesced atomic.Uint64
}

// Fetcher fetches objects for mounts.
type Fetcher struct {
	opts  Options
	Stats Stats

	group singleflight.Group

	mu      sync.Mutex // guards clients, sems, cache
	clients map[string]*clients
	sems    map[string]chan struct{}
	cache   map[string]cached
}

type clients struct {
	secrets *azsecrets.Client
	keys    *azkeys.Client
	certs   *azcertificates.Client
}

type cached struct {
	value   any // raw or []raw (version lists)
	expires time.Time
}

// New returns a Fetcher.
func New(opts Options) *Fetcher {
	if opts.PerVault == 0 {
		opts.PerVault = 16
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	return &Fetcher{opts: opts, clients: map[string]*clients{}, sems: map[string]chan struct{}{}, cache: map[string]cached{}}
}

// Request is one mount's fetch.
type Request struct {
	VaultURL string
	Cred     identity.Credential
	// Principal is who the mount's own token says it is; the cache is
	// keyed by it.
	Principal identity.Principal
	Objects   []config.Object
}

// File is one file to write.
type File struct {
	Path     string
	Mode     os.FileMode
	Contents []byte
}

// Version is an object version for the driver's status and rotation.
type Version struct {
	ID, Version string
}

// ObjectError is a failure to fetch one object; it wraps the SDK's error.
type ObjectError struct {
	Object config.Object
	Vault  string
	Err    error
}

func (e *ObjectError) Error() string {
	return fmt.Sprintf("%s %q (version %q) in %s: %v", e.Object.Type, e.Object.Name, e.Object.Version, e.Vault, e.Err)
}

func (e *ObjectError) Unwrap() error { return e.Err }

// Fetch gets every object of the request, in parallel, and renders the
// files. Any object's failure fails the mount, as upstream does.
func (f *Fetcher) Fetch(ctx context.Context, req Request) ([]File, []Version, error) {
	c, err := f.clientsFor(req)
	if err != nil {
		return nil, nil, err
	}
	files := make([][]File, len(req.Objects))
	versions := make([][]Version, len(req.Objects))
	g, ctx := errgroup.WithContext(ctx)
	for i, o := range req.Objects {
		g.Go(func() error {
			var err error
			files[i], versions[i], err = f.object(ctx, req, c, o)
			if err != nil {
				return &ObjectError{Object: o, Vault: req.VaultURL, Err: err}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	var allFiles []File
	var allVersions []Version
	for i := range files {
		allFiles = append(allFiles, files[i]...)
		allVersions = append(allVersions, versions[i]...)
	}
	return allFiles, allVersions, nil
}

// object fetches one object: one version, or its history.
func (f *Fetcher) object(ctx context.Context, req Request, c *clients, o config.Object) ([]File, []Version, error) {
	if o.History <= 1 {
		r, err := f.read(ctx, req, c, o, o.Version)
		if err != nil {
			return nil, nil, err
		}
		files, err := f.files(o, o.File, r)
		return files, []Version{{ID: o.ID(), Version: r.Version}}, err
	}
	list, err := f.history(ctx, req, c, o)
	if err != nil {
		return nil, nil, err
	}
	var files []File
	var versions []Version
	for i, v := range list {
		r, err := f.read(ctx, req, c, o, v)
		if err != nil {
			return nil, nil, err
		}
		fs, err := f.files(o, o.Files()[i], r)
		if err != nil {
			return nil, nil, err
		}
		files = append(files, fs...)
		versions = append(versions, Version{ID: o.ID() + "/" + strconv.Itoa(i), Version: r.Version})
	}
	return files, versions, nil
}

func (f *Fetcher) files(o config.Object, path string, r raw) ([]File, error) {
	out, err := render(o, r, f.opts.KeepPEMOrder)
	if err != nil {
		return nil, err
	}
	files := []File{{Path: path, Mode: o.Mode, Contents: out.main}}
	if f.opts.SeparateCertKey && out.hasParts {
		files = append(files, File{Path: path + ".crt", Mode: o.Mode, Contents: out.cert}, File{Path: path + ".key", Mode: o.Mode, Contents: out.key})
	}
	return files, nil
}

// read returns one object version: from the cache, from an identical read
// in flight, or from Key Vault.
func (f *Fetcher) read(ctx context.Context, req Request, c *clients, o config.Object, version string) (raw, error) {
	key := strings.Join([]string{req.Principal.String(), req.VaultURL, o.Type, strings.ToLower(o.Name), strings.ToLower(version)}, "|")
	v, err := f.cached(ctx, key, req.VaultURL, func(ctx context.Context) (any, error) { return get(ctx, c, o, version) })
	if err != nil {
		return raw{}, err
	}
	return v.(raw), nil
}

// cached runs fetch once for key among concurrent callers and keeps its
// result for CacheTTL.
func (f *Fetcher) cached(ctx context.Context, key, vault string, fetch func(context.Context) (any, error)) (any, error) {
	now := f.opts.Now()
	f.mu.Lock()
	if e, ok := f.cache[key]; ok && now.Before(e.expires) {
		f.mu.Unlock()
		f.Stats.CacheHits.Add(1)
		return e.value, nil
	}
	f.mu.Unlock()
	v, err, shared := f.group.Do(key, func() (any, error) {
		if err := f.acquire(ctx, vault); err != nil {
			return nil, err
		}
		defer f.release(vault)
		f.Stats.Requests.Add(1)
		v, err := fetch(ctx)
		if err == nil && f.opts.CacheTTL > 0 {
			f.store(key, v)
		}
		return v, err
	})
	if shared {
		f.Stats.Coalesced.Add(1)
	}
	return v, err
}

// maxCache bounds the node cache; past it, expired entries are dropped
// and, if that is not enough, the whole cache.
const maxCache = 50000

func (f *Fetcher) store(key string, v any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.opts.Now()
	if len(f.cache) >= maxCache {
		for k, e := range f.cache {
			if now.After(e.expires) {
				delete(f.cache, k)
			}
		}
		if len(f.cache) >= maxCache {
			f.cache = map[string]cached{}
		}
	}
	f.cache[key] = cached{value: v, expires: now.Add(f.opts.CacheTTL)}
}

func (f *Fetcher) acquire(ctx context.Context, vault string) error {
	f.mu.Lock()
	sem, ok := f.sems[vault]
	if !ok {
		sem = make(chan struct{}, f.opts.PerVault)
		f.sems[vault] = sem
	}
	f.mu.Unlock()
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *Fetcher) release(vault string) {
	f.mu.Lock()
	sem := f.sems[vault]
	f.mu.Unlock()
	<-sem
}

// clientsFor returns the long-lived SDK clients of (vault, credential).
func (f *Fetcher) clientsFor(req Request) (*clients, error) {
	key := req.VaultURL + "|" + req.Cred.Key
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.clients[key]; ok {
		return c, nil
	}
	opts := azcore.ClientOptions{Transport: f.opts.HTTPClient}
	// Retries honour Retry-After (429) and back off with jitter, bounded
	// so that a mount ends well inside kubelet's two-minute deadline.
	opts.Retry = policy.RetryOptions{MaxRetries: 4, RetryDelay: 400 * time.Millisecond, MaxRetryDelay: 15 * time.Second, TryTimeout: 20 * time.Second}
	s, err := azsecrets.NewClient(req.VaultURL, req.Cred, &azsecrets.ClientOptions{ClientOptions: opts})
	if err != nil {
		return nil, err
	}
	k, err := azkeys.NewClient(req.VaultURL, req.Cred, &azkeys.ClientOptions{ClientOptions: opts})
	if err != nil {
		return nil, err
	}
	ce, err := azcertificates.NewClient(req.VaultURL, req.Cred, &azcertificates.ClientOptions{ClientOptions: opts})
	if err != nil {
		return nil, err
	}
	c := &clients{secrets: s, keys: k, certs: ce}
	f.clients[key] = c
	return c, nil
}

// errNilField is Key Vault returning a response without a field it always
// sets; it is reported instead of dereferencing nil.
var errNilField = errors.New("Key Vault's response lacks a required field")
