package provider_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/azsim/azsimtest"
	"kvmount.dev/kvmount/internal/azure/provider"
)

// vaultWithSecret makes kv1 with secret1 = value.
func vaultWithSecret(t testing.TB, s *azsim.Server, value string) {
	t.Helper()
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kv1", ResourceGroup: "rg"})
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "secret1", Value: value})
}

func grant(t testing.TB, s *azsim.Server, spn string) {
	t.Helper()
	get := ptr([]string{"get", "list"})
	admin(t, s, "keyvault set-policy", arm.PolicyArgs{Name: "kv1", SPN: spn, Secrets: get, Keys: get, Certificates: get})
}

func wantCode(t *testing.T, err error, code codes.Code, parts ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("code %v (%v), want %v", st.Code(), err, code)
	}
	for _, p := range parts {
		if !strings.Contains(st.Message(), p) {
			t.Errorf("message %q does not contain %q", st.Message(), p)
		}
	}
}

// TestUserAssignedIdentity is the seed's second section: the scale set's
// user-assigned identity picked by client ID (and by resource ID, which
// upstream cannot do).
func TestUserAssignedIdentity(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "from-user-assigned")
	ua := admin(t, s, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "kv-reader"})
	other := admin(t, s, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "kubelet"})
	admin(t, s, "vmss create", arm.MachineArgs{ResourceGroup: "rg", Name: "pool", InstanceCount: 1})
	admin(t, s, "vmss identity assign", arm.AssignArgs{ResourceGroup: "rg", Name: "pool", Identities: []string{ua["id"].(string), other["id"].(string)}})
	grant(t, s, ua["clientId"].(string))
	imds, _ := s.IMDSURL("vmss/rg/pool/0")
	e := startProvider(t, s, cloudEnv, func(rc *provider.RunConfig) { rc.IMDSEndpoint = imds })

	for _, id := range []string{ua["clientId"].(string), ua["id"].(string)} {
		p := e.baseParams("objectName: secret1\nobjectType: secret")
		p["useVMManagedIdentity"], p["userAssignedIdentityID"] = "true", id
		resp, err := e.mount(p, nil)
		if err != nil {
			t.Fatalf("mount with %s: %v", id, err)
		}
		if f := filesOf(resp)["secret1"]; f == nil || string(f.Contents) != "from-user-assigned" || f.Mode != 0o644 {
			t.Fatalf("files %v", resp.Files)
		}
		if v := resp.ObjectVersion; len(v) != 1 || v[0].Id != "secret/secret1" || len(v[0].Version) != 32 {
			t.Errorf("object versions %v", v)
		}
	}
	// The same scale set, no ID: two user-assigned identities, no
	// system-assigned one, so IMDS cannot choose.
	p := e.baseParams("objectName: secret1\nobjectType: secret")
	p["useVMManagedIdentity"] = "true"
	_, err := e.mount(p, nil)
	wantCode(t, err, codes.FailedPrecondition, "several user-assigned identities", "set userAssignedIdentityID", "kv1")
	// An identity that is not assigned to this node.
	stranger := admin(t, s, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "stranger"})
	p["userAssignedIdentityID"] = stranger["clientId"].(string)
	_, err = e.mount(p, nil)
	wantCode(t, err, codes.FailedPrecondition, "is not assigned to this node", stranger["clientId"].(string))
}

// TestSystemAssignedIdentity is the seed's third section: with
// userAssignedIdentityID empty, IMDS picks the system-assigned identity
// first, even beside a user-assigned one.
func TestSystemAssignedIdentity(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "from-system-assigned")
	ua := admin(t, s, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "extra"})
	admin(t, s, "vmss create", arm.MachineArgs{ResourceGroup: "rg", Name: "pool", InstanceCount: 1})
	out := admin(t, s, "vmss identity assign", arm.AssignArgs{ResourceGroup: "rg", Name: "pool", Identities: []string{"[system]", ua["id"].(string)}})
	grant(t, s, out["systemAssignedIdentity"].(string))
	imds, _ := s.IMDSURL("vmss/rg/pool/0")
	e := startProvider(t, s, cloudEnv, func(rc *provider.RunConfig) { rc.IMDSEndpoint = imds })
	p := e.baseParams("objectName: secret1\nobjectType: secret")
	p["usePodIdentity"], p["useVMManagedIdentity"], p["userAssignedIdentityID"] = "false", "true", ""
	resp, err := e.mount(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(filesOf(resp)["secret1"].Contents) != "from-system-assigned" {
		t.Fatal("wrong content")
	}
}

// TestServicePrincipal mounts with nodePublishSecretRef credentials, and a
// wrong secret gets Unauthenticated with the fix.
func TestServicePrincipal(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "from-sp")
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{Name: "csi"})
	grant(t, s, sp["appId"].(string))
	e := startProvider(t, s, cloudEnv, nil)
	p := e.baseParams("objectName: secret1\nobjectType: secret")
	resp, err := e.mount(p, map[string]string{"clientid": sp["appId"].(string), "clientsecret": sp["password"].(string)})
	if err != nil {
		t.Fatal(err)
	}
	if string(filesOf(resp)["secret1"].Contents) != "from-sp" {
		t.Fatal("wrong content")
	}
	_, err = e.mount(p, map[string]string{"clientid": sp["appId"].(string), "clientsecret": "wrong"})
	wantCode(t, err, codes.Unauthenticated, "clientsecret in the nodePublishSecretRef Secret is wrong")
}

// TestWorkloadIdentity exchanges the pod's service-account token (as the
// driver passes it from the CSIDriver's tokenRequests) at Entra ID; another
// service account with the same clientID is refused, not served from the
// first one's cached token.
func TestWorkloadIdentity(t *testing.T) {
	iss := azsimtest.NewIssuer(t)
	s, cloudEnv := newSim(t, azsim.Config{TrustCAFiles: []string{iss.CAFile}})
	vaultWithSecret(t, s, "from-workload-identity")
	ua := admin(t, s, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "wi"})
	admin(t, s, "identity federated-credential create", arm.FederatedArgs{ResourceGroup: "rg", IdentityName: "wi", Name: "app",
		Issuer: iss.URL, Subject: "system:serviceaccount:default:app"})
	grant(t, s, ua["clientId"].(string))
	e := startProvider(t, s, cloudEnv, nil)
	mountAs := func(sa string) error {
		p := e.baseParams("objectName: secret1\nobjectType: secret")
		p["clientID"], p["csi.storage.k8s.io/serviceAccount.name"] = ua["clientId"].(string), sa
		toks, _ := json.Marshal(map[string]any{"api://AzureADTokenExchange": map[string]string{"token": iss.Token("default", sa), "expirationTimestamp": time.Now().Add(time.Hour).Format(time.RFC3339)}})
		p["csi.storage.k8s.io/serviceAccount.tokens"] = string(toks)
		resp, err := e.mount(p, nil)
		if err == nil && string(filesOf(resp)["secret1"].Contents) != "from-workload-identity" {
			t.Fatal("wrong content")
		}
		return err
	}
	if err := mountAs("app"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, mountAs("intruder"), codes.PermissionDenied, "no federated credential for service account default/intruder", "az identity federated-credential create")
}
