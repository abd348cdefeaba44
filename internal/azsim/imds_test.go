package azsim_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/azsim/jwt"
)

// imdsGet sends a raw IMDS token request and returns status and body.
func imdsGet(t *testing.T, base string, query url.Values, metadata bool) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/metadata/identity/oauth2/token?"+query.Encode(), nil)
	if metadata {
		req.Header.Set("Metadata", "true")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("IMDS answered non-JSON %q", b)
	}
	return resp.StatusCode, m
}

// TestIMDSRules checks identity selection and every error text on three
// machines: one with a system-assigned and a user-assigned identity, one
// with a single user-assigned identity, one with two.
func TestIMDSRules(t *testing.T) {
	s := startServer(t, azsim.Config{})
	ua1 := admin(t, s, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "ua1"})
	ua2 := admin(t, s, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "ua2"})
	admin(t, s, "vm create", arm.MachineArgs{ResourceGroup: "rg", Name: "both"})
	sys := admin(t, s, "vm identity assign", arm.AssignArgs{ResourceGroup: "rg", Name: "both", Identities: []string{"[system]", "ua1"}})
	admin(t, s, "vm create", arm.MachineArgs{ResourceGroup: "rg", Name: "single"})
	admin(t, s, "vm identity assign", arm.AssignArgs{ResourceGroup: "rg", Name: "single", Identities: []string{ua2["id"].(string)}})
	admin(t, s, "vm create", arm.MachineArgs{ResourceGroup: "rg", Name: "two"})
	admin(t, s, "vm identity assign", arm.AssignArgs{ResourceGroup: "rg", Name: "two", Identities: []string{"ua1", "ua2"}})
	admin(t, s, "vm create", arm.MachineArgs{ResourceGroup: "rg", Name: "none"})
	imdsOf := func(vm string) string {
		u, err := s.IMDSURL("vm/rg/" + vm)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	q := func(kv ...string) url.Values {
		v := url.Values{"api-version": {"2018-02-01"}, "resource": {"https://vault.azure.net"}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	tests := []struct {
		name       string
		vm         string
		query      url.Values
		noHeader   bool
		wantStatus int
		wantOID    string
		wantDesc   string
	}{
		{"no metadata header", "both", q(), true, 400, "", "Required metadata header not specified"},
		{"system-assigned first", "both", q(), false, 200, sys["systemAssignedIdentity"].(string), ""},
		{"user-assigned by client_id", "both", q("client_id", ua1["clientId"].(string)), false, 200, ua1["principalId"].(string), ""},
		{"user-assigned by object_id", "both", q("object_id", ua1["principalId"].(string)), false, 200, ua1["principalId"].(string), ""},
		{"user-assigned by msi_res_id", "both", q("msi_res_id", ua1["id"].(string)), false, 200, ua1["principalId"].(string), ""},
		{"user-assigned by mi_res_id", "both", q("mi_res_id", ua1["id"].(string)), false, 200, ua1["principalId"].(string), ""},
		{"identity not assigned here", "both", q("client_id", ua2["clientId"].(string)), false, 400, "", "Identity not found"},
		{"single user-assigned is the default", "single", q(), false, 200, ua2["principalId"].(string), ""},
		{"two user-assigned and none named", "two", q(), false, 400, "", "Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request"},
		{"no identity at all", "none", q(), false, 400, "", "Identity not found"},
		{"no resource", "both", url.Values{"api-version": {"2018-02-01"}}, false, 400, "", "Required query variable 'resource' is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := imdsGet(t, imdsOf(tt.vm), tt.query, !tt.noHeader)
			if status != tt.wantStatus {
				t.Fatalf("status %d (%v), want %d", status, body, tt.wantStatus)
			}
			if tt.wantDesc != "" {
				if body["error"] != "invalid_request" || body["error_description"] != tt.wantDesc {
					t.Errorf("body %v, want invalid_request %q", body, tt.wantDesc)
				}
				return
			}
			for _, f := range []string{"access_token", "client_id", "expires_in", "expires_on", "ext_expires_in", "not_before", "resource", "token_type"} {
				if _, ok := body[f].(string); !ok {
					t.Errorf("field %s is %T, want a string as IMDS sends", f, body[f])
				}
			}
			p, err := jwt.Parse(body["access_token"].(string))
			if err != nil || p.Claims.ObjectID != tt.wantOID || body["resource"] != "https://vault.azure.net" {
				t.Errorf("token for oid %q resource %v, want %q", p.Claims.ObjectID, body["resource"], tt.wantOID)
			}
		})
	}
}

// TestManagedIdentityReadsVault goes the whole way with the SDK: a VM's
// user-assigned identity (picked by client ID) gets an IMDS token and reads
// a secret after set-policy --spn <client id>.
func TestManagedIdentityReadsVault(t *testing.T) {
	s := startServer(t, azsim.Config{})
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kv1", ResourceGroup: "rg"})
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "secret1", Value: "hello"})
	ua := admin(t, s, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "mi-reader"})
	admin(t, s, "vmss create", arm.MachineArgs{ResourceGroup: "rg", Name: "pool", InstanceCount: 2})
	admin(t, s, "vmss identity assign", arm.AssignArgs{ResourceGroup: "rg", Name: "pool", Identities: []string{ua["id"].(string)}})
	admin(t, s, "keyvault set-policy", arm.PolicyArgs{Name: "kv1", SPN: ua["clientId"].(string), Secrets: ptr([]string{"get"})})
	imds, err := s.IMDSURL("vmss/rg/pool/1")
	if err != nil {
		t.Fatal(err)
	}
	c := secretsClient(t, s, "kv1", miCredential(t, imds, azidentity.ClientID(ua["clientId"].(string))))
	got, err := c.GetSecret(context.Background(), "secret1", "", nil)
	if err != nil || *got.Value != "hello" {
		t.Fatalf("GetSecret with managed identity: %v", err)
	}
}

// TestForeignTenantRefused: a token issued in tenant B (a managed identity
// of that tenant) is refused by a vault of tenant A with AKV10032, even
// though an access policy names the identity.
func TestForeignTenantRefused(t *testing.T) {
	s := startServer(t, azsim.Config{})
	tenantB := "0b0b0b0b-0000-4000-8000-00000000000b"
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kva", ResourceGroup: "rg"})
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kva", Name: "s", Value: "v"})
	ua := admin(t, s, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "foreign", TenantID: tenantB})
	admin(t, s, "vm create", arm.MachineArgs{ResourceGroup: "rg", Name: "vmb"})
	admin(t, s, "vm identity assign", arm.AssignArgs{ResourceGroup: "rg", Name: "vmb", Identities: []string{"foreign"}})
	admin(t, s, "keyvault set-policy", arm.PolicyArgs{Name: "kva", SPN: ua["clientId"].(string), Secrets: ptr([]string{"get"})})
	imds, _ := s.IMDSURL("vm/rg/vmb")
	c := secretsClient(t, s, "kva", miCredential(t, imds, azidentity.ClientID(ua["clientId"].(string))))
	_, err := c.GetSecret(context.Background(), "s", "", nil)
	wantResponseError(t, err, http.StatusUnauthorized, "Unauthorized", "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/"+s.TenantID()+"/")
	if !strings.Contains(err.Error(), tenantB) {
		t.Errorf("error does not name the token's tenant %s: %v", tenantB, err)
	}
}

// TestIMDSByAddress: with node addresses, one IMDS answers each caller as
// its own machine, told by the caller's address, and refuses an address no
// machine has, naming it.
func TestIMDSByAddress(t *testing.T) {
	s := startServer(t, azsim.Config{NodeAddresses: map[string]string{"127.0.0.1": "single"}})
	ua := admin(t, s, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "ua"})
	admin(t, s, "vm create", arm.MachineArgs{ResourceGroup: "rg", Name: "single"})
	admin(t, s, "vm identity assign", arm.AssignArgs{ResourceGroup: "rg", Name: "single", Identities: []string{ua["id"].(string)}})
	q := url.Values{"api-version": {"2018-02-01"}, "resource": {"https://vault.azure.net"}}
	status, body := imdsGet(t, s.Endpoints().NodeIMDS, q, true)
	if status != 200 || body["client_id"] != ua["clientId"] {
		t.Fatalf("the caller at 127.0.0.1 (machine single) got %d %v, want a token for %v", status, body, ua["clientId"])
	}

	other := startServer(t, azsim.Config{NodeAddresses: map[string]string{"127.0.0.2": "single"}})
	resp, err := http.Get(other.Endpoints().NodeIMDS + "/metadata/identity/oauth2/token")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "no machine has address 127.0.0.1") {
		t.Fatalf("unknown caller: %d %s", resp.StatusCode, b)
	}
}
