package azsim_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/azsim/azsimtest"
)

// TestThrottled: past the per-vault GET limit the vault answers 429 with a
// Retry-After the SDK can honour.
func TestThrottled(t *testing.T) {
	s := startServer(t, azsim.Config{GetLimit: 5})
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kv1", ResourceGroup: "rg"})
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "s", Value: "v"})
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	admin(t, s, "keyvault set-policy", arm.PolicyArgs{Name: "kv1", SPN: sp["appId"].(string), Secrets: ptr([]string{"get"})})
	c := secretsClient(t, s, "kv1", spCredential(t, s, sp))
	var err error
	for i := 0; i < 6 && err == nil; i++ {
		_, err = c.GetSecret(context.Background(), "s", "", nil)
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("got %v, want 429 after 5 GETs", err)
	}
	if ra := re.RawResponse.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q, want seconds until the window ends", ra)
	}
	if st := s.KeyVault().Stats("kv1"); st.Throttled != 1 || st.Gets != 5 {
		t.Errorf("stats %+v, want 5 served gets and 1 throttled", st)
	}
}

// TestStateSurvivesRestart: vaults, secrets, app secrets, identities, the
// signing key, the CA and IMDS ports are all kept in the data dir.
func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, azsim.Config{DataDir: dir})
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kv1", ResourceGroup: "rg"})
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "s", Value: "kept"})
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	admin(t, s, "keyvault set-policy", arm.PolicyArgs{Name: "kv1", SPN: sp["appId"].(string), Secrets: ptr([]string{"get"})})
	admin(t, s, "vm create", arm.MachineArgs{ResourceGroup: "rg", Name: "vm", AssignIdentity: true})
	imds1, _ := s.IMDSURL("vm/rg/vm")
	tenant := s.TenantID()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := startServer(t, azsim.Config{DataDir: dir})
	if s2.TenantID() != tenant {
		t.Errorf("tenant changed across restart")
	}
	if imds2, _ := s2.IMDSURL("vm/rg/vm"); imds2 != imds1 {
		t.Errorf("IMDS moved from %s to %s", imds1, imds2)
	}
	got, err := secretsClient(t, s2, "kv1", spCredential(t, s2, sp)).GetSecret(context.Background(), "s", "", nil)
	if err != nil || *got.Value != "kept" {
		t.Fatalf("after restart: %v", err)
	}
}

// TestWorkloadIdentityFederation exchanges a service-account token for an
// Entra token with ClientAssertionCredential: the federated credential's
// issuer keys are fetched and checked, and a token for another subject is
// refused with AADSTS70021.
func TestWorkloadIdentityFederation(t *testing.T) {
	iss := azsimtest.NewIssuer(t)
	s := startServer(t, azsim.Config{TrustCAFiles: []string{iss.CAFile}})
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kv1", ResourceGroup: "rg"})
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "s", Value: "federated"})
	ua := admin(t, s, "identity create", arm.IdentityArgs{ResourceGroup: "rg", Name: "wi"})
	admin(t, s, "identity federated-credential create", arm.FederatedArgs{ResourceGroup: "rg", IdentityName: "wi", Name: "fc",
		Issuer: iss.URL, Subject: "system:serviceaccount:default:workload"})
	admin(t, s, "keyvault set-policy", arm.PolicyArgs{Name: "kv1", SPN: ua["clientId"].(string), Secrets: ptr([]string{"get"})})

	cred := func(sa string) azcore.TokenCredential {
		var once sync.Once
		var tok string
		opts := &azidentity.ClientAssertionCredentialOptions{ClientOptions: clientOptions(s), DisableInstanceDiscovery: true}
		opts.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: azsim.LoginURL + "/"}
		c, err := azidentity.NewClientAssertionCredential(s.TenantID(), ua["clientId"].(string), func(context.Context) (string, error) {
			once.Do(func() { tok = iss.Token("default", sa) })
			return tok, nil
		}, opts)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	got, err := secretsClient(t, s, "kv1", cred("workload")).GetSecret(context.Background(), "s", "", nil)
	if err != nil || *got.Value != "federated" {
		t.Fatalf("workload identity: %v", err)
	}
	_, err = secretsClient(t, s, "kv1", cred("intruder")).GetSecret(context.Background(), "s", "", nil)
	if err == nil || !strings.Contains(err.Error(), "AADSTS70021") || !strings.Contains(err.Error(), "system:serviceaccount:default:intruder") {
		t.Fatalf("got %v, want AADSTS70021 naming the subject", err)
	}
}
