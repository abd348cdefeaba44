package tokenproxy

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"kvmount.dev/kvmount/internal/azsim/entra"
	"kvmount.dev/kvmount/internal/azsim/store"
)

// TestServerName: vectors computed outside Go (Python:
// "a" + base64.b32hexencode(sha256(b"identity-binding" + id)).decode()
// .rstrip("=").lower() + ".ests.aks"), the same the provider's rule is
// checked against: the two agree because both follow AKS's documented rule,
// not because one calls the other.
func TestServerName(t *testing.T) {
	for id, want := range map[string]string{
		"5f3c2a1b0e9d8c7b6a5f4e3d": "a5kb5mkbq4ago161h32u5ithg5mfenfs7bvenet59igfvvrlmig8g.ests.aks",
		"abc":                      "ar47lgcnhtn52tohpbtporqbc5cjfjah6gmfdpri09hpae1b0v370.ests.aks",
	} {
		if got := ServerName(id); got != want {
			t.Errorf("ServerName(%q) = %s, want %s", id, got, want)
		}
	}
}

const (
	tenant   = "tenant1"
	bound    = "client-bound"
	unbound  = "client-unbound"
	saToken  = "sa-token"
	saUser   = "system:serviceaccount:default:app"
	userTok  = "user-token"
	anyToken = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// directory knows one cluster, "aks1", with a binding for bound only.
type directory struct{}

func (directory) ClusterByServerName(sni string) (Cluster, error) {
	if sni != ServerName("cp1") {
		return Cluster{}, errors.New("no cluster has server name " + sni)
	}
	return Cluster{Name: "aks1", ResourceGroup: "rg"}, nil
}

func (directory) BoundIdentity(_ Cluster, tn, clientID string) (store.Principal, string, error) {
	p := store.Principal{ClientID: clientID, ObjectID: "obj-" + clientID, TenantID: tenant, Kind: store.KindUserAssigned, ResourceID: "/id/" + clientID}
	switch {
	case tn != tenant || (clientID != bound && clientID != unbound):
		return store.Principal{}, "", store.ErrNotFound
	case clientID == unbound:
		return p, "", nil
	}
	return p, "binding1", nil
}

// reviewer is an API server whose RBAC lets saUser use bound; userTok is
// a user's token, anything else unauthenticated; "sar-down" fails the
// access review.
type reviewer struct{ audiences []string }

func (r *reviewer) ReviewToken(_ context.Context, token, audience string) (string, []string, error) {
	r.audiences = append(r.audiences, audience)
	switch token {
	case saToken, "sar-down":
		return saUser, []string{"system:serviceaccounts"}, nil
	}
	return "", nil, errors.New("the API server did not authenticate it")
}

func (r *reviewer) Allowed(_ context.Context, user string, _ []string, verb, group, resource string) (bool, error) {
	if user == saUser && verb == Verb && group == Group && resource == "sar-down" {
		return false, errors.New("access review: connection refused")
	}
	return user == saUser && verb == Verb && group == Group && resource == bound, nil
}

// TestAuth: the token endpoint behind the proxy, table-driven, without a
// cluster: Entra's real handler with the proxy's client authentication.
func TestAuth(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "azsim.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	ent := entra.New(entra.Config{DB: db, Issuer: entra.NewIssuer(key, nil), BaseURL: "https://login.azsim.test", Federation: &entra.Federation{}})
	rev := &reviewer{}
	calls := 0
	h := (&Proxy{Dir: directory{}, Reviewer: rev, OnToken: func() { calls++ }}).Handler(ent)

	tests := []struct {
		name, sni, client, assertion, assertionType string
		status                                      int
		want                                        string
	}{
		{"bound and allowed", ServerName("cp1"), bound, saToken, anyToken, 200, "access_token"},
		{"unknown server name", ServerName("cp2"), bound, saToken, anyToken, 400, "no cluster has server name"},
		{"not an identity", ServerName("cp1"), "nobody", saToken, anyToken, 400, "AADSTS700016"},
		{"no binding", ServerName("cp1"), unbound, saToken, anyToken, 400, "has no identity binding for managed identity client-unbound"},
		{"no assertion", ServerName("cp1"), bound, "", anyToken, 400, "must carry the pod's service-account token"},
		{"wrong assertion type", ServerName("cp1"), bound, saToken, "secret", 400, "must carry the pod's service-account token"},
		{"not a service-account token", ServerName("cp1"), bound, userTok, anyToken, 401, "not a valid service-account token of cluster aks1"},
		{"another tenant's identity", ServerName("cp1"), "sar-down", "sar-down", anyToken, 400, "AADSTS700016"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{"grant_type": {"client_credentials"}, "client_id": {tt.client}, "scope": {"https://vault.azsim.test/.default"},
				"client_assertion": {tt.assertion}, "client_assertion_type": {tt.assertionType}}
			req := httptest.NewRequest(http.MethodPost, "https://proxy/"+tenant+"/oauth2/v2.0/token", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.TLS = &tls.ConnectionState{ServerName: tt.sni}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.want) {
				t.Fatalf("%d %s; want %d with %q", rec.Code, rec.Body, tt.status, tt.want)
			}
			if tt.status == 200 {
				var body map[string]any
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["token_type"] != "Bearer" {
					t.Fatalf("token answer %s: %v", rec.Body, err)
				}
			}
		})
	}
	if calls != len(tests) {
		t.Errorf("OnToken counted %d requests, want %d", calls, len(tests))
	}
	for _, a := range rev.audiences {
		if a != Audience {
			t.Errorf("token reviewed for audience %q, want %q", a, Audience)
		}
	}
}

// TestAuthRBAC: a bound identity the service account's RBAC does not
// allow is refused naming the verb and resource; a failed access review is
// an error that says so; an allowed one gets the identity.
func TestAuthRBAC(t *testing.T) {
	p := &Proxy{Dir: directory{}, Reviewer: &reviewer{}}
	req := func(client, assertion string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "https://proxy/", nil)
		r.TLS = &tls.ConnectionState{ServerName: ServerName("cp1")}
		r.PostForm = url.Values{"client_assertion": {assertion}, "client_assertion_type": {anyToken}}
		return r
	}
	dir := allowAll{directory{}}
	p.Dir = dir
	if _, err := p.Auth(req("other-identity", saToken), tenant, "other-identity"); err == nil ||
		!strings.Contains(err.Error(), "is not allowed to use managed identity other-identity") || !strings.Contains(err.Error(), Verb+" on "+Group+"/other-identity") {
		t.Errorf("unbound RBAC: %v", err)
	}
	if _, err := p.Auth(req("sar-down", "sar-down"), tenant, "sar-down"); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("failed access review: %v", err)
	}
	if got, err := p.Auth(req(bound, saToken), tenant, bound); err != nil || got.ClientID != bound {
		t.Errorf("allowed: %v %v", got, err)
	}
}

// allowAll binds every client ID of the tenant.
type allowAll struct{ directory }

func (allowAll) BoundIdentity(_ Cluster, tn, clientID string) (store.Principal, string, error) {
	if tn != tenant {
		return store.Principal{}, "", store.ErrNotFound
	}
	return store.Principal{ClientID: clientID, TenantID: tenant, Kind: store.KindUserAssigned}, "binding1", nil
}
