// Package keyvault fetches a mount's objects from Azure Key Vault and
// renders them as files. It is built for many pods per node: long-lived SDK
// clients per (vault, principal), so tokens and Key Vault's challenge are
// cached; a mount's objects fetched in parallel with a bound per vault;
// identical reads in flight coalesced across mounts, on their own context
// (package flight);
// one throttle state per vault honoured by every mount; and a node cache
// that serves rotations only, one poll interval at a time (cache.go).
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

	"kvmount.dev/kvmount/internal/azure/config"
	"kvmount.dev/kvmount/internal/azure/identity"
	"kvmount.dev/kvmount/internal/epoch"
	"kvmount.dev/kvmount/internal/flight"
	"kvmount.dev/kvmount/internal/lru"
	"kvmount.dev/kvmount/internal/refresh"
)

// Options tune the fetcher.
type Options struct {
	// HTTPClient carries Key Vault traffic.
	HTTPClient *http.Client
	// Epochs are the node cache's: an object read in an epoch (one
	// rotation poll interval) is served to rotations of the same principal
	// in that epoch only. A zero period disables the cache.
	Epochs epoch.Clock
	// PerVault bounds concurrent requests to one vault (default 16).
	PerVault int
	// ReadTimeout bounds one shared read (default 60 s).
	ReadTimeout time.Duration
	// MaxClients bounds the SDK clients kept (default 1024); idle ones
	// leave after an hour.
	MaxClients int
	// SeparateCertKey also writes <file>.crt and <file>.key for
	// certificate-backed secrets (--write-cert-and-key-in-separate-files).
	SeparateCertKey bool
	// KeepPEMOrder writes a PFX-backed certificate's chain in Key Vault's
	// order instead of leaf → intermediates → root
	// (--construct-pem-chain=false).
	KeepPEMOrder bool
	// OrderPEMSecrets rebuilds PEM-backed certificate secrets too (key,
	// then leaf → root); by default they are written as stored, as
	// upstream does (--order-pem-cert-secrets).
	OrderPEMSecrets bool
	// UserAgent is appended to the SDK's User-Agent (--custom-user-agent).
	UserAgent string
	// Observe, if set, is told of every Key Vault request.
	Observe func(o config.Object, err error, d time.Duration)
	Now     func() time.Time
}

// Stats are the fetcher's counters, for metrics and benchmarks.
type Stats struct {
	// Requests counts calls to Key Vault (GETs and version lists).
	Requests atomic.Uint64
	// CacheHits counts reads served from the node cache.
	CacheHits atomic.Uint64
	// Coalesced counts reads that joined an identical one in flight.
	Coalesced atomic.Uint64
	// Kept counts objects of pushed refreshes served as the versions the
	// volume has, without a read.
	Kept atomic.Uint64
}

// Fetcher fetches objects for mounts.
type Fetcher struct {
	opts  Options
	Stats Stats

	flights *flight.Group[any]
	cache   *epochCache
	// held are object versions read, by principal and exact version: a
	// version's content never changes, so a pushed refresh serves the
	// objects it does not name from here as the versions the volume
	// already has (see plan).
	held    *lru.Cache[string, raw]
	clients *lru.Cache[string, *clients]
	// gates are each vault's throttle state; an idle one leaves (a
	// throttle lasts minutes at most, and clients keep theirs).
	gates *lru.Cache[string, *gate]

	mu sync.Mutex // guards sems
	// sems bound each vault's concurrent requests; a vault's entry lives
	// while requests hold or wait for it.
	sems map[string]*sem
}

// sem is one vault's request slots and how many requests hold or wait for
// them.
type sem struct {
	slots chan struct{}
	users int
}

// New returns a Fetcher.
func New(opts Options) *Fetcher {
	if opts.PerVault == 0 {
		opts.PerVault = 16
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = 60 * time.Second
	}
	if opts.MaxClients == 0 {
		opts.MaxClients = 1024
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	f := &Fetcher{opts: opts, cache: newEpochCache(opts.Epochs), held: lru.New[string, raw](maxHeld, heldIdle(opts.Epochs), opts.Now),
		clients: lru.New[string, *clients](opts.MaxClients, time.Hour, opts.Now),
		gates:   lru.New[string, *gate](opts.MaxClients, time.Hour, opts.Now), sems: map[string]*sem{}}
	f.flights = &flight.Group[any]{Timeout: opts.ReadTimeout, OnJoin: func() { f.Stats.Coalesced.Add(1) }}
	return f
}

// maxHeld bounds the versions held for pushed refreshes.
const maxHeld = 4096

// heldIdle is how long a held version stays unused: two polls, at least
// an hour (a volume is refreshed at least once per poll, which uses it).
func heldIdle(c epoch.Clock) time.Duration { return max(2*c.Period, time.Hour) }

// Request is one mount's fetch.
type Request struct {
	VaultURL string
	// VaultName is the vault's name, which changes name.
	VaultName string
	Cred      identity.Credential
	// Principal is who the mount's own token says it is; clients and the
	// cache are keyed by it.
	Principal identity.Principal
	Objects   []config.Object
	// Republish is a rotation of a mounted volume (the driver sent its
	// current object versions): only then may the node cache serve it. A
	// first mount always reads Key Vault, so a new pod never gets an older
	// version than Key Vault has.
	Republish bool
	// Refresh, on a republish pushed by a change or asked for by a user,
	// names the objects to read afresh (reads begun at Refresh.Since or
	// later); the others are served as the versions the volume has
	// (Current), without a read when they are held. Nil: every object is
	// read as Republish says.
	Refresh *refresh.Request
	// Current is the volume's mounted version of each object, by ID.
	Current map[string]string
}

// plan is how one object of a mount is read.
type plan int

const (
	// planRead: as Republish says.
	planRead plan = iota
	// planFresh: a read begun at Refresh.Since or later.
	planFresh
	// planKeep: the versions the volume has.
	planKeep
)

// plan decides how object o is read: afresh if the refresh asks for every
// object or a change names it (unless the change's version is the one
// mounted); else as mounted, if the volume has it; else as Republish says.
func (req Request) plan(o config.Object) plan {
	r := req.Refresh
	if r == nil {
		return planRead
	}
	if r.All {
		return planFresh
	}
	for _, c := range r.Changes {
		if !o.ChangedBy(c, req.VaultName) {
			continue
		}
		if c.Version == "" || o.History > 1 || !strings.EqualFold(req.Current[o.ID()], c.Version) {
			return planFresh
		}
	}
	if len(req.mounted(o)) > 0 {
		return planKeep
	}
	return planRead
}

// mounted are the versions of o the volume has, newest first: one, or an
// objectVersionHistory object's; nil when it has none.
func (req Request) mounted(o config.Object) []string {
	if o.History <= 1 {
		if v := req.Current[o.ID()]; v != "" {
			return []string{v}
		}
		return nil
	}
	var out []string
	for i := range o.History {
		v := req.Current[o.ID()+"/"+strconv.Itoa(i)]
		if v == "" {
			break
		}
		out = append(out, v)
	}
	return out
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
	// Missing says why an optional object has no files (it does not
	// exist, is disabled, or may not be read); Version is then "".
	Missing string
}

// ObjectError is a failure to fetch one object; it wraps the SDK's error.
type ObjectError struct {
	Object config.Object
	Vault  string
	// Principal is who the mount read the object's vault as.
	Principal identity.Principal
	Err       error
}

func (e *ObjectError) Error() string {
	return fmt.Sprintf("%s %q (version %q) in %s: %v", e.Object.Type, e.Object.Name, e.Object.Version, e.Vault, e.Err)
}

func (e *ObjectError) Unwrap() error { return e.Err }

// MountError is every object of a mount that failed, in the class's order.
type MountError struct {
	Objects []*ObjectError
}

func (e *MountError) Error() string {
	parts := make([]string, len(e.Objects))
	for i, oe := range e.Objects {
		parts[i] = oe.Error()
	}
	return strings.Join(parts, "; ")
}

// Unwrap exposes each object's error to errors.Is and errors.As.
func (e *MountError) Unwrap() []error {
	out := make([]error, len(e.Objects))
	for i, oe := range e.Objects {
		out[i] = oe
	}
	return out
}

// Fetch gets every object of the request, in parallel, and renders the
// files. Every object is tried, so that a failure reports each object that
// failed, not just the first; any failure fails the mount, as upstream.
func (f *Fetcher) Fetch(ctx context.Context, req Request) ([]File, []Version, error) {
	c, err := f.clientsFor(req)
	if err != nil {
		return nil, nil, err
	}
	ctx = withCredential(ctx, req.Cred)
	files := make([][]File, len(req.Objects))
	versions := make([][]Version, len(req.Objects))
	errs := make([]error, len(req.Objects))
	var wg sync.WaitGroup
	for i, o := range req.Objects {
		wg.Go(func() { files[i], versions[i], errs[i] = f.object(ctx, req, c, o) })
	}
	wg.Wait()
	var me MountError
	var allFiles []File
	var allVersions []Version
	for i, o := range req.Objects {
		if why := skippable(o, errs[i]); why != "" {
			allVersions = append(allVersions, Version{ID: o.ID(), Missing: why})
			continue
		}
		if errs[i] != nil {
			me.Objects = append(me.Objects, &ObjectError{Object: o, Vault: req.VaultURL, Principal: req.Principal, Err: errs[i]})
			continue
		}
		allFiles = append(allFiles, files[i]...)
		allVersions = append(allVersions, versions[i]...)
	}
	if len(me.Objects) > 0 {
		return nil, nil, &me
	}
	return allFiles, allVersions, nil
}

// skippable says why an optional object's failure leaves its files out
// instead of failing the mount: it does not exist, or is disabled, or
// (optionalWhenForbidden only) the identity may not read it. Any other
// failure, and every failure of a required object, gives "".
func skippable(o config.Object, err error) string {
	var re *azcore.ResponseError
	if err == nil || !o.Optional || !errors.As(err, &re) {
		return ""
	}
	switch {
	case re.StatusCode == http.StatusNotFound:
		return "it does not exist"
	case re.StatusCode == http.StatusForbidden && strings.Contains(re.Error(), "is not allowed on a disabled"):
		return "it is disabled"
	case re.StatusCode == http.StatusForbidden && o.OptionalWhenForbidden:
		return "the identity may not read it (optionalWhenForbidden)"
	}
	return ""
}

// object fetches one object: one version, or its history.
func (f *Fetcher) object(ctx context.Context, req Request, c *clients, o config.Object) ([]File, []Version, error) {
	var since time.Time
	switch req.plan(o) {
	case planKeep:
		return f.keep(ctx, req, c, o)
	case planFresh:
		since = req.Refresh.Since
	}
	if o.History <= 1 {
		r, err := f.read(ctx, req, c, o, o.Version, since)
		if err != nil {
			return nil, nil, err
		}
		files, err := f.files(o, o.File, r)
		return files, []Version{{ID: o.ID(), Version: r.Version}}, err
	}
	list, err := f.history(ctx, req, c, o, since)
	if err != nil {
		return nil, nil, err
	}
	return f.versions(ctx, req, c, o, list)
}

// keep serves the versions of o the volume has: held ones without a read,
// others read by their exact version.
func (f *Fetcher) keep(ctx context.Context, req Request, c *clients, o config.Object) ([]File, []Version, error) {
	list := req.mounted(o)
	if o.History <= 1 {
		r, err := f.version(ctx, req, c, o, list[0])
		if err != nil {
			return nil, nil, err
		}
		files, err := f.files(o, o.File, r)
		return files, []Version{{ID: o.ID(), Version: r.Version}}, err
	}
	return f.versions(ctx, req, c, o, list)
}

// version returns an exact version of o: held, or read.
func (f *Fetcher) version(ctx context.Context, req Request, c *clients, o config.Object, version string) (raw, error) {
	if r, ok := f.held.Get(heldKey(req, o, version)); ok {
		f.Stats.Kept.Add(1)
		return r, nil
	}
	return f.read(ctx, req, c, o, version, time.Time{})
}

// versions renders an objectVersionHistory object's versions, newest
// first, as File/0 … File/n-1.
func (f *Fetcher) versions(ctx context.Context, req Request, c *clients, o config.Object, list []string) ([]File, []Version, error) {
	var files []File
	var versions []Version
	for i, v := range list {
		r, err := f.version(ctx, req, c, o, v)
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
	out, err := render(o, r, order{keepPFX: f.opts.KeepPEMOrder, pem: f.opts.OrderPEMSecrets})
	if err != nil {
		return nil, err
	}
	files := []File{{Path: path, Mode: o.Mode, Contents: out.main}}
	for _, jf := range o.JSONFields {
		v, err := config.ExtractJSON([]byte(r.Value), jf.Path)
		if err != nil {
			return nil, &FormatError{Object: o, Msg: err.Error() + ": fix the jsonFields path or the secret's JSON"}
		}
		files = append(files, File{Path: jf.File, Mode: jf.Mode, Contents: v})
	}
	if f.opts.SeparateCertKey && out.hasParts {
		files = append(files, File{Path: path + ".crt", Mode: o.Mode, Contents: out.cert}, File{Path: path + ".key", Mode: o.Mode, Contents: out.key})
	}
	return files, nil
}

// read returns one object version: from the node cache (rotations only,
// and only a read begun at since or later), from an identical read in
// flight, or from Key Vault. What it returns is held for pushed refreshes.
func (f *Fetcher) read(ctx context.Context, req Request, c *clients, o config.Object, version string, since time.Time) (raw, error) {
	key := strings.Join([]string{req.Principal.String(), req.VaultURL, o.Type, strings.ToLower(o.Name), strings.ToLower(version)}, "|")
	v, err := f.load(ctx, req, key, since, f.observed(o, func(ctx context.Context) (any, error) { return get(ctx, c, o, version) }))
	if err != nil {
		return raw{}, err
	}
	r := v.(raw)
	f.held.Put(heldKey(req, o, r.Version), r)
	return r, nil
}

func heldKey(req Request, o config.Object, version string) string {
	return strings.Join([]string{req.Principal.String(), req.VaultURL, o.Type, strings.ToLower(o.Name), strings.ToLower(version)}, "|")
}

// observed wraps a Key Vault call with the Observe hook.
func (f *Fetcher) observed(o config.Object, fetch func(context.Context) (any, error)) func(context.Context) (any, error) {
	if f.opts.Observe == nil {
		return fetch
	}
	return func(ctx context.Context) (any, error) {
		start := time.Now()
		v, err := fetch(ctx)
		f.opts.Observe(o, err, time.Since(start))
		return v, err
	}
}

// load serves key from the cache when the request may use it (and the
// read began at since or later), else reads it once among concurrent
// callers and stores the result for this epoch. A read that must begin
// after since joins only reads in flight for the same since.
func (f *Fetcher) load(ctx context.Context, req Request, key string, since time.Time, fetch func(context.Context) (any, error)) (any, error) {
	if req.Republish {
		if v, ok := f.cache.get(key, f.opts.Now(), since); ok {
			f.Stats.CacheHits.Add(1)
			return v, nil
		}
	}
	fkey := key
	if !since.IsZero() {
		fkey += "|since=" + strconv.FormatInt(since.UnixNano(), 10)
	}
	return f.flights.Do(ctx, fkey, func(ctx context.Context) (any, error) {
		if err := f.acquire(ctx, req.VaultURL); err != nil {
			return nil, err
		}
		defer f.release(req.VaultURL)
		started := f.opts.Now()
		f.Stats.Requests.Add(1)
		v, err := fetch(ctx)
		if err == nil {
			f.cache.put(key, v, started, f.opts.Now())
		}
		return v, err
	})
}

func (f *Fetcher) acquire(ctx context.Context, vault string) error {
	f.mu.Lock()
	s, ok := f.sems[vault]
	if !ok {
		s = &sem{slots: make(chan struct{}, f.opts.PerVault)}
		f.sems[vault] = s
	}
	s.users++
	f.mu.Unlock()
	select {
	case s.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		f.leave(vault, s)
		return ctx.Err()
	}
}

func (f *Fetcher) release(vault string) {
	f.mu.Lock()
	s := f.sems[vault]
	f.mu.Unlock()
	<-s.slots
	f.leave(vault, s)
}

// leave drops a vault's entry once no request holds or waits for it.
func (f *Fetcher) leave(vault string, s *sem) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.users--; s.users == 0 {
		delete(f.sems, vault)
	}
}

// errNilField is Key Vault returning a response without a field it always
// sets; it is reported instead of dereferencing nil.
var errNilField = errors.New("Key Vault's response lacks a required field")
