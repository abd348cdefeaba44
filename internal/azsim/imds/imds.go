// Package imds serves one virtual machine's Instance Metadata Service token
// endpoint, GET /metadata/identity/oauth2/token, with the real service's
// identity selection (system-assigned first, then a single user-assigned),
// error texts, string-typed response fields, token caching and rate limits.
// azsim runs one per VM (or scale set instance), each on its own port.
package imds

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"kvmount.dev/kvmount/internal/azsim/entra"
	"kvmount.dev/kvmount/internal/azsim/store"
)

// tokenLifetime is the lifetime of managed-identity tokens; IMDS caches them
// and answers with the remaining time, so expires_in counts down.
const tokenLifetime = 24 * time.Hour

// Config says which machine the endpoint belongs to.
type Config struct {
	DB     *store.DB
	Issuer *entra.Issuer
	// Machine is the store key of the VM or scale set (store.MachineKey).
	Machine string
	// PerSecond and Concurrent are the rate limits; zero means the
	// service's 20 requests per second and 5 at once.
	PerSecond, Concurrent int
	Now                   func() time.Time
}

// Handler is one machine's IMDS.
type Handler struct {
	cfg   Config
	slots chan struct{}

	mu     sync.Mutex // guards cache and recent
	cache  map[string]entra.Token
	recent []time.Time
}

// New returns the IMDS of cfg.Machine.
func New(cfg Config) *Handler {
	if cfg.PerSecond == 0 {
		cfg.PerSecond = 20
	}
	if cfg.Concurrent == 0 {
		cfg.Concurrent = 5
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Handler{cfg: cfg, slots: make(chan struct{}, cfg.Concurrent), cache: map[string]entra.Token{}}
}

// ServeHTTP answers the token endpoint; every other path is 404, as on a VM.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.URL.Path, "/metadata/identity/oauth2/token") || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	default:
		writeError(w, http.StatusTooManyRequests, "too_many_requests", "Too many requests: at most 5 requests may be in flight.")
		return
	}
	if !h.allow() {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "too_many_requests", "Too many requests: at most 20 requests per second.")
		return
	}
	if r.Header.Get("Metadata") != "true" {
		writeError(w, http.StatusBadRequest, "invalid_request", "Required metadata header not specified")
		return
	}
	q := r.URL.Query()
	if q.Get("api-version") == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "Required query variable 'api-version' is missing")
		return
	}
	resource := q.Get("resource")
	if resource == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "Required query variable 'resource' is missing")
		return
	}
	p, err := h.selectIdentity(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	h.answer(w, p, resource)
}

// allow admits a request under the per-second limit.
func (h *Handler) allow() bool {
	now := h.cfg.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	keep := h.recent[:0]
	for _, t := range h.recent {
		if now.Sub(t) < time.Second {
			keep = append(keep, t)
		}
	}
	h.recent = keep
	if len(h.recent) >= h.cfg.PerSecond {
		return false
	}
	h.recent = append(h.recent, now)
	return true
}

// Identity selection errors, worded as IMDS words them.
var (
	errNotFound = errors.New("Identity not found")
	errMultiple = errors.New("Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request")
)

// selectIdentity picks the identity a request asks for, or the default:
// the system-assigned identity, else the only user-assigned one.
func (h *Handler) selectIdentity(q url.Values) (store.Principal, error) {
	var p store.Principal
	err := h.cfg.DB.View(func(tx *store.Tx) error {
		m, err := store.Get[store.Machine](tx, store.BucketMachines, h.cfg.Machine)
		if err != nil {
			return errNotFound
		}
		ids, err := identities(tx, m)
		if err != nil {
			return err
		}
		p, err = choose(ids, q)
		return err
	})
	return p, err
}

// identities lists the machine's system-assigned identity (first, if any)
// and its user-assigned ones.
func identities(tx *store.Tx, m store.Machine) ([]store.Principal, error) {
	var ids []store.Principal
	if m.SystemAssigned != "" {
		sys, err := store.Get[store.Principal](tx, store.BucketPrincipals, store.Path(m.SystemAssigned))
		if err == nil {
			ids = append(ids, sys)
		}
	}
	for _, rid := range m.UserAssigned {
		ua, err := store.FindUserAssigned(tx, rid)
		if err == nil {
			ids = append(ids, ua)
		}
	}
	return ids, nil
}

func choose(ids []store.Principal, q url.Values) (store.Principal, error) {
	resID := q.Get("msi_res_id")
	if resID == "" {
		resID = q.Get("mi_res_id")
	}
	match := func(f func(store.Principal) bool) (store.Principal, error) {
		for _, p := range ids {
			if f(p) {
				return p, nil
			}
		}
		return store.Principal{}, errNotFound
	}
	switch {
	case q.Get("client_id") != "":
		return match(func(p store.Principal) bool { return strings.EqualFold(p.ClientID, q.Get("client_id")) })
	case q.Get("object_id") != "":
		return match(func(p store.Principal) bool { return strings.EqualFold(p.ObjectID, q.Get("object_id")) })
	case resID != "":
		return match(func(p store.Principal) bool { return strings.EqualFold(p.ResourceID, resID) })
	}
	if len(ids) == 0 {
		return store.Principal{}, errNotFound
	}
	if ids[0].Kind == store.KindSystemAssigned || len(ids) == 1 {
		return ids[0], nil
	}
	return store.Principal{}, errMultiple
}

// answer returns a cached token for (identity, resource) while it has more
// than five minutes left, else a new one.
func (h *Handler) answer(w http.ResponseWriter, p store.Principal, resource string) {
	key := p.ObjectID + "|" + resource
	now := h.cfg.Now()
	h.mu.Lock()
	tok, ok := h.cache[key]
	h.mu.Unlock()
	if !ok || tok.ExpiresOn.Sub(now) < 5*time.Minute {
		var err error
		tok, err = h.cfg.Issuer.Issue(p, resource, tokenLifetime)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "unknown", "azsim: could not sign the token")
			return
		}
		h.mu.Lock()
		h.cache[key] = tok
		h.mu.Unlock()
	}
	left := int(tok.ExpiresOn.Sub(now) / time.Second)
	writeJSON(w, http.StatusOK, map[string]string{
		"access_token":   tok.Value,
		"client_id":      p.ClientID,
		"expires_in":     strconv.Itoa(left),
		"expires_on":     strconv.FormatInt(tok.ExpiresOn.Unix(), 10),
		"ext_expires_in": strconv.Itoa(left),
		"not_before":     strconv.FormatInt(tok.NotBefore.Unix(), 10),
		"resource":       resource,
		"token_type":     "Bearer",
	})
}

func writeError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
