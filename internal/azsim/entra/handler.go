package entra

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"kvmount.dev/kvmount/internal/azsim/store"
)

// tokenLifetime is how long client-credential tokens live, as in Entra ID.
const tokenLifetime = time.Hour

// Config wires the login host.
type Config struct {
	DB     *store.DB
	Issuer *Issuer
	// BaseURL is the authority host, e.g. https://login.azsim.test.
	BaseURL string
	// Federation fetches external issuers' discovery documents and keys.
	Federation *Federation
}

// Handler serves the Entra ID endpoints under /{tenant}/.
type Handler struct {
	cfg Config
	// auth authenticates the token endpoint's client; nil is Entra ID's
	// own (client secret or federated assertion of an app).
	auth ClientAuth
}

// ClientAuth authenticates a token request's client (its form is parsed)
// and returns the principal the token is for; an error from NewOAuthError
// is answered as Entra ID answers errors.
type ClientAuth func(r *http.Request, tenant, clientID string) (store.Principal, error)

// WithClientAuth is h with another client authentication at its token
// endpoint and everything else unchanged: the token proxies in front of
// Entra ID (AKS identity binding's) authenticate clients their own way.
func (h *Handler) WithClientAuth(auth ClientAuth) *Handler {
	c := *h
	c.auth = auth
	return &c
}

// NewOAuthError is an OAuth2 error answer of the token endpoint: its HTTP
// status, error code, AADSTS number (0 for none) and description.
func NewOAuthError(status int, code string, number int, desc string) error {
	return &oauthErr{status, code, number, desc}
}

// New returns the login host handler.
func New(cfg Config) *Handler { return &Handler{cfg: cfg} }

var tenantRE = regexp.MustCompile(`^[0-9A-Za-z.-]{1,64}$`)

// ServeHTTP routes /{tenant}/v2.0/.well-known/openid-configuration,
// /{tenant}/discovery/v2.0/keys, /{tenant}/oauth2/v2.0/token and
// /common/discovery/instance.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)
	if len(parts) != 2 || !tenantRE.MatchString(parts[0]) {
		oauthError(w, http.StatusNotFound, "invalid_request", 90002, "azsim: unknown path "+r.URL.Path)
		return
	}
	tenant, rest := parts[0], parts[1]
	switch {
	case rest == "discovery/instance" && r.Method == http.MethodGet:
		h.instanceDiscovery(w, r)
	case rest == "v2.0/.well-known/openid-configuration" && r.Method == http.MethodGet:
		h.openIDConfiguration(w, tenant)
	case rest == "discovery/v2.0/keys" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, h.cfg.Issuer.JWKS())
	case rest == "oauth2/v2.0/token" && r.Method == http.MethodPost:
		h.token(w, r, tenant)
	default:
		oauthError(w, http.StatusNotFound, "invalid_request", 90002, "azsim: unknown path "+r.URL.Path)
	}
}

func (h *Handler) openIDConfiguration(w http.ResponseWriter, tenant string) {
	base := h.cfg.BaseURL + "/" + tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                base + "/v2.0",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"tenant_region_scope":                   "WW",
	})
}

// instanceDiscovery answers MSAL's authority validation locally, naming the
// login host as its own only alias.
func (h *Handler) instanceDiscovery(w http.ResponseWriter, r *http.Request) {
	host := strings.TrimPrefix(h.cfg.BaseURL, "https://")
	tenant := "common"
	if ae := r.URL.Query().Get("authorization_endpoint"); ae != "" {
		if p := strings.Split(strings.TrimPrefix(ae, "https://"), "/"); len(p) > 1 {
			tenant = p[1]
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"tenant_discovery_endpoint": h.cfg.BaseURL + "/" + tenant + "/v2.0/.well-known/openid-configuration",
		"api-version":               "1.1",
		"metadata":                  []map[string]any{{"preferred_network": host, "preferred_cache": host, "aliases": []string{host}}},
	})
}

// token is the client-credentials grant, with a client secret or a
// federated client assertion.
func (h *Handler) token(w http.ResponseWriter, r *http.Request, tenant string) {
	r.Body = http.MaxBytesReader(w, r.Body, 64*1024)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", 900144, "AADSTS900144: The request body must be application/x-www-form-urlencoded.")
		return
	}
	f := r.PostForm
	if gt := f.Get("grant_type"); gt != "client_credentials" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", 70003, fmt.Sprintf("AADSTS70003: The app requested an unsupported grant type '%s'.", gt))
		return
	}
	resource, ok := ResourceFromScope(f.Get("scope"))
	if !ok {
		oauthError(w, http.StatusBadRequest, "invalid_scope", 1002012, fmt.Sprintf("AADSTS1002012: The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", f.Get("scope")))
		return
	}
	auth := h.auth
	if auth == nil {
		auth = h.authenticateClient
	}
	p, err := auth(r, tenant, f.Get("client_id"))
	if err != nil {
		var oe *oauthErr
		if errors.As(err, &oe) {
			oauthError(w, oe.status, oe.code, oe.number, oe.msg)
			return
		}
		oauthError(w, http.StatusInternalServerError, "server_error", 0, "azsim: internal error")
		return
	}
	tok, err := h.cfg.Issuer.Issue(p, resource, tokenLifetime)
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", 0, "azsim: could not sign the token")
		return
	}
	secs := int(tokenLifetime / time.Second)
	writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": tok.Value})
}

// authenticateClient finds the app in the tenant and checks its secret or
// federated assertion, returning its service principal.
func (h *Handler) authenticateClient(r *http.Request, tenant, clientID string) (store.Principal, error) {
	var app store.App
	var sp store.Principal
	err := h.cfg.DB.View(func(tx *store.Tx) error {
		var err error
		if app, err = store.Get[store.App](tx, store.BucketApps, store.Path(clientID)); err != nil {
			return err
		}
		sp, err = store.Get[store.Principal](tx, store.BucketPrincipals, store.Path(app.ObjectID))
		return err
	})
	if errors.Is(err, store.ErrNotFound) || (err == nil && !strings.EqualFold(sp.TenantID, tenant)) {
		return sp, &oauthErr{http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf(
			"AADSTS700016: Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.", clientID, tenant)}
	}
	if err != nil {
		return sp, err
	}
	f := r.PostForm
	switch {
	case f.Get("client_secret") != "":
		if !secretMatches(app.SecretHashes, f.Get("client_secret")) {
			return sp, &oauthErr{http.StatusUnauthorized, "invalid_client", 7000215, fmt.Sprintf(
				"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", clientID)}
		}
	case f.Get("client_assertion") != "":
		if f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			return sp, &oauthErr{http.StatusBadRequest, "invalid_request", 50027, "AADSTS50027: client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer."}
		}
		if err := h.cfg.Federation.Check(r.Context(), app, f.Get("client_assertion")); err != nil {
			return sp, err
		}
	default:
		return sp, &oauthErr{http.StatusUnauthorized, "invalid_client", 7000218, "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'."}
	}
	return sp, nil
}

// HashSecret is how client secrets are kept: their SHA-256, hex.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func secretMatches(hashes []string, secret string) bool {
	got := HashSecret(secret)
	ok := false
	for _, h := range hashes {
		if subtle.ConstantTimeCompare([]byte(h), []byte(got)) == 1 {
			ok = true
		}
	}
	return ok
}

// oauthErr is an OAuth2 error answer of the token endpoint.
type oauthErr struct {
	status int
	code   string
	number int
	msg    string
}

func (e *oauthErr) Error() string { return e.msg }

func oauthError(w http.ResponseWriter, status int, code string, number int, desc string) {
	body := map[string]any{"error": code, "error_description": desc, "timestamp": time.Now().UTC().Format("2006-01-02 15:04:05Z"),
		"trace_id": store.NewGUID(), "correlation_id": store.NewGUID()}
	if number != 0 {
		body["error_codes"] = []int{number}
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
