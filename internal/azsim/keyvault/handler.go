// Package keyvault serves the Azure Key Vault data plane (secrets, keys,
// certificates) for every vault in azsim's store, one host name per vault
// (<vault>.<DNSSuffix>), the way the official Azure SDK for Go expects it: the
// 401 challenge first, bearer tokens verified for audience, issuer and
// lifetime, access policies or RBAC enforced with the real error codes and
// texts, per-vault throttling at the service's limits.
package keyvault

import (
	"context"
	"errors"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"kvmount.dev/kvmount/internal/azsim/store"
)

// Config says how the data plane behaves. All fields but Latency and
// GetLimit are required.
type Config struct {
	DB *store.DB
	// DNSSuffix is the vaults' host suffix: vault v is v.<DNSSuffix>.
	DNSSuffix string
	// Resource is the challenge resource and the token audience Key Vault
	// accepts; its host must be DNSSuffix so the SDK's suffix check passes.
	Resource string
	// LoginURL is the Entra authority host named in the challenge.
	LoginURL       string
	SubscriptionID string
	Verifier       Verifier
	// Latency is added to every request, to model a remote service.
	Latency time.Duration
	// GetLimit is the number of object GETs a vault answers per 10 s
	// before it throttles with 429; zero means the service's 4,000.
	GetLimit int
	Now      func() time.Time
	// Changed, if set, is told of every new object version, after it is
	// stored: what Key Vault publishes as *NewVersionCreated events. A
	// certificate's new version is one change (its backing key and secret
	// are not announced on their own).
	Changed func(Change)
}

// Change is one new object version.
type Change struct {
	Vault string
	// Kind is "secrets", "keys" or "certificates".
	Kind, Name, Version string
	NBF, EXP            *time.Time
}

// Stats counts one vault's requests, for benchmarks.
type Stats struct {
	// Requests is every request that reached the vault, challenges included.
	Requests uint64 `json:"requests"`
	// Challenges is the number answered with the 401 challenge.
	Challenges uint64 `json:"challenges"`
	// Gets is the number of object reads (secret, key, certificate, versions).
	Gets uint64 `json:"gets"`
	// Throttled is the number answered 429.
	Throttled uint64 `json:"throttled"`
}

// Handler is the Key Vault data plane.
type Handler struct {
	cfg Config

	mu    sync.Mutex // guards stats, objectGets and windows
	stats map[string]*Stats
	// objectGets counts reads per vault|object name.
	objectGets map[string]uint64
	windows    map[string]*window
	faults     faults
}

// window is one vault's current 10-second throttling window.
type window struct {
	start time.Time
	gets  int
}

// New returns the data plane for cfg.
func New(cfg Config) *Handler {
	if cfg.GetLimit == 0 {
		cfg.GetLimit = 4000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Handler{cfg: cfg, stats: map[string]*Stats{}, objectGets: map[string]uint64{}, windows: map[string]*window{}}
}

// Stats returns a copy of vault's counters.
func (h *Handler) Stats(vault string) Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.stats[strings.ToLower(vault)]; s != nil {
		return *s
	}
	return Stats{}
}

// ResetStats zeroes every vault's counters.
func (h *Handler) ResetStats() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stats = map[string]*Stats{}
	h.objectGets = map[string]uint64{}
}

// ObjectGets is how many reads of one object (any version, or its version
// list) reached vault since the last ResetStats.
func (h *Handler) ObjectGets(vault, object string) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.objectGets[strings.ToLower(vault)+"|"+strings.ToLower(object)]
}

// VaultFromHost returns the vault named by a request host, if the host is
// under DNSSuffix.
func (h *Handler) VaultFromHost(host string) (string, bool) {
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	}
	name, ok := strings.CutSuffix(strings.ToLower(host), "."+h.cfg.DNSSuffix)
	if !ok || !validVaultName(name) {
		return "", false
	}
	return name, true
}

var vaultNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{1,22}[a-z0-9]$`)

func validVaultName(n string) bool { return vaultNameRE.MatchString(n) && !strings.Contains(n, "--") }

// ServeHTTP answers one data-plane request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := h.VaultFromHost(r.Host)
	if !ok {
		writeError(w, &apiError{status: http.StatusNotFound, code: "VaultNotFound", msg: "azsim: no vault at host " + r.Host})
		return
	}
	if err := sleep(r.Context(), h.cfg.Latency); err != nil {
		return
	}
	h.count(name, func(s *Stats) { s.Requests++ })
	status, body, err := h.serve(r, name)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.status == http.StatusUnauthorized {
			h.count(name, func(s *Stats) { s.Challenges++ })
		}
		writeError(w, err)
		return
	}
	writeJSON(w, status, body)
}

// serve runs the pipeline: vault lookup, authentication (the challenge
// comes before any other answer), throttling, then the operation.
func (h *Handler) serve(r *http.Request, name string) (int, any, error) {
	v, err := h.vault(name)
	if err != nil {
		return 0, nil, err
	}
	c, err := h.authenticate(r, v.TenantID)
	if err != nil {
		return 0, nil, err
	}
	if err := checkAPIVersion(r.URL.Query().Get("api-version")); err != nil {
		return 0, nil, err
	}
	if err := checkMaxResults(r); err != nil {
		return 0, nil, err
	}
	op, err := route(r.Method, r.URL.Path)
	if err != nil {
		return 0, nil, err
	}
	if err := h.fault(r.Context(), name, op.name); err != nil {
		return 0, nil, err
	}
	if op.read {
		if err := h.throttle(name); err != nil {
			return 0, nil, err
		}
		h.count(name, func(s *Stats) { s.Gets++ })
		h.mu.Lock()
		h.objectGets[name+"|"+strings.ToLower(op.name)]++
		h.mu.Unlock()
	}
	if err := h.authorize(v, c, op.kind, op.perm, op.name); err != nil {
		return 0, nil, err
	}
	return op.run(h, r, v, op)
}

func (h *Handler) vault(name string) (store.Vault, error) {
	var v store.Vault
	err := h.cfg.DB.View(func(tx *store.Tx) error {
		var err error
		v, err = store.Get[store.Vault](tx, store.BucketVaults, store.Path(name))
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return v, &apiError{status: http.StatusNotFound, code: "VaultNotFound", msg: "azsim: vault " + name + " does not exist; create it with `azsim keyvault create -n " + name + "`"}
	}
	return v, err
}

func (h *Handler) count(vault string, f func(*Stats)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.stats[vault]
	if s == nil {
		s = &Stats{}
		h.stats[vault] = s
	}
	f(s)
}

// throttle counts one GET against the vault's 10-second window.
func (h *Handler) throttle(vault string) error {
	const period = 10 * time.Second
	now := h.cfg.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	win := h.windows[vault]
	if win == nil || now.Sub(win.start) >= period {
		win = &window{start: now}
		h.windows[vault] = win
	}
	if win.gets >= h.cfg.GetLimit {
		s := h.stats[vault]
		s.Throttled++
		retry := int((period - now.Sub(win.start) + time.Second - 1) / time.Second)
		return &apiError{status: http.StatusTooManyRequests, code: "Throttled",
			msg:    "Request was not processed because too many requests were received. Reason: A1",
			header: map[string]string{"Retry-After": itoa(retry)}}
	}
	win.gets++
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// apiVersions are the Key Vault data-plane API versions azsim serves (the
// ones the SDKs and the upstream provider send), with their previews.
var apiVersions = []string{"2016-10-01", "7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01", "2026-04-01"}

// latestAPIVersion is named in refusals, as the service names its latest.
const latestAPIVersion = "2026-04-01"

func checkAPIVersion(v string) error {
	if v == "" {
		return errBadParameter("The api-version query parameter is missing. Add ?api-version=%s or another supported version.", latestAPIVersion)
	}
	base, _, _ := strings.Cut(v, "-preview")
	if slices.Contains(apiVersions, base) {
		return nil
	}
	return errBadParameter("The specified version (%s) is not recognized. Consider using the latest supported version (%s).", v, latestAPIVersion)
}

// changed tells Config.Changed of a new version.
func (h *Handler) changed(vault, kind, name, version string, a store.Attributes) {
	if h.cfg.Changed != nil {
		h.cfg.Changed(Change{Vault: strings.ToLower(vault), Kind: kind, Name: name, Version: version, NBF: a.NBF, EXP: a.EXP})
	}
}
