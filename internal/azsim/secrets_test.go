package azsim_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/arm"
)

// TestSecretsRoundTrip sets, reads and lists secret versions with the
// official SDK, and checks that a disabled version is refused.
func TestSecretsRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := startServer(t, azsim.Config{})
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kv1", ResourceGroup: "rg"})
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{Name: "writer"})
	admin(t, s, "keyvault set-policy", arm.PolicyArgs{Name: "kv1", SPN: sp["appId"].(string), Secrets: ptr([]string{"get", "list", "set"})})
	c := secretsClient(t, s, "kv1", spCredential(t, s, sp))

	v1, err := c.SetSecret(ctx, "db-password", azsecrets.SetSecretParameters{Value: ptr("one"), ContentType: ptr("text/plain")}, nil)
	if err != nil {
		t.Fatalf("SetSecret: %v", err)
	}
	v2, err := c.SetSecret(ctx, "db-password", azsecrets.SetSecretParameters{Value: ptr("two")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.GetSecret(ctx, "db-password", "", nil)
	if err != nil {
		t.Fatalf("GetSecret latest: %v", err)
	}
	if *got.Value != "two" || got.ID.Version() != v2.ID.Version() {
		t.Errorf("latest = %q (%s), want two (%s)", *got.Value, got.ID.Version(), v2.ID.Version())
	}
	old, err := c.GetSecret(ctx, "db-password", v1.ID.Version(), nil)
	if err != nil || *old.Value != "one" || *old.ContentType != "text/plain" {
		t.Fatalf("GetSecret v1 = %+v, %v", old, err)
	}
	var versions []string
	pager := c.NewListSecretPropertiesVersionsPager("db-password", nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page.Value {
			versions = append(versions, p.ID.Version())
		}
	}
	if len(versions) != 2 {
		t.Errorf("versions = %v, want 2", versions)
	}

	if _, err := c.UpdateSecretProperties(ctx, "db-password", v2.ID.Version(), azsecrets.UpdateSecretPropertiesParameters{
		SecretAttributes: &azsecrets.SecretAttributes{Enabled: ptr(false)}}, nil); err != nil {
		t.Fatalf("disable: %v", err)
	}
	_, err = c.GetSecret(ctx, "db-password", "", nil)
	wantResponseError(t, err, http.StatusForbidden, "Forbidden", "Operation get is not allowed on a disabled secret.")
	_, err = c.GetSecret(ctx, "missing", "", nil)
	wantResponseError(t, err, http.StatusNotFound, "SecretNotFound", "A secret with (name/id) missing was not found in this key vault.")
}

// TestPolicyDeniesThenAllows checks the access-policy model: 403
// ForbiddenByPolicy naming the principal and permission, then 200 after
// set-policy.
func TestPolicyDeniesThenAllows(t *testing.T) {
	ctx := context.Background()
	s := startServer(t, azsim.Config{})
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kv1", ResourceGroup: "rg"})
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "s1", Value: "v"})
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{Name: "reader"})
	c := secretsClient(t, s, "kv1", spCredential(t, s, sp))

	_, err := c.GetSecret(ctx, "s1", "", nil)
	wantResponseError(t, err, http.StatusForbidden, "Forbidden", "appid="+sp["appId"].(string))
	wantResponseError(t, err, http.StatusForbidden, "Forbidden", "does not have secrets get permission on key vault 'kv1;location=westus2'")
	if !strings.Contains(err.Error(), "ForbiddenByPolicy") {
		t.Errorf("no ForbiddenByPolicy inner code in %v", err)
	}
	admin(t, s, "keyvault set-policy", arm.PolicyArgs{Name: "kv1", SPN: sp["appId"].(string), Secrets: ptr([]string{"get"})})
	got, err := c.GetSecret(ctx, "s1", "", nil)
	if err != nil || *got.Value != "v" {
		t.Fatalf("after set-policy: %v", err)
	}
	// get alone does not list versions.
	_, err = c.NewListSecretPropertiesVersionsPager("s1", nil).NextPage(ctx)
	wantResponseError(t, err, http.StatusForbidden, "Forbidden", "does not have secrets list permission")
}

// TestRBAC checks role assignments: Secrets User reads but cannot write,
// and the denial is ForbiddenByRbac with the data action.
func TestRBAC(t *testing.T) {
	ctx := context.Background()
	s := startServer(t, azsim.Config{})
	vault := admin(t, s, "keyvault create", arm.VaultArgs{Name: "kvrbac", ResourceGroup: "rg", RBAC: true})
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kvrbac", Name: "s1", Value: "v"})
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{Name: "app"})
	c := secretsClient(t, s, "kvrbac", spCredential(t, s, sp))
	_, err := c.GetSecret(ctx, "s1", "", nil)
	wantResponseError(t, err, http.StatusForbidden, "Forbidden", "Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'")

	admin(t, s, "role assignment create", arm.RoleArgs{Assignee: sp["appId"].(string), Role: "Key Vault Secrets User", Scope: vault["id"].(string)})
	if _, err := c.GetSecret(ctx, "s1", "", nil); err != nil {
		t.Fatalf("GetSecret with Secrets User: %v", err)
	}
	_, err = c.SetSecret(ctx, "s1", azsecrets.SetSecretParameters{Value: ptr("x")}, nil)
	wantResponseError(t, err, http.StatusForbidden, "Forbidden", "secrets/setSecret/action")
	if !strings.Contains(err.Error(), "ForbiddenByRbac") {
		t.Errorf("no ForbiddenByRbac inner code in %v", err)
	}
}

// TestRBACScopeBySegment: a role's scope covers its resource and what is
// below it, by path segment: a role on vault kv1 does not reach kv10, a
// role on secret s does not reach s2.
func TestRBACScopeBySegment(t *testing.T) {
	ctx := context.Background()
	s := startServer(t, azsim.Config{})
	kv1 := admin(t, s, "keyvault create", arm.VaultArgs{Name: "kvseg1", ResourceGroup: "rg", RBAC: true})
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kvseg10", ResourceGroup: "rg", RBAC: true})
	for _, v := range []string{"kvseg1", "kvseg10"} {
		for _, n := range []string{"s", "s2"} {
			admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: v, Name: n, Value: "v"})
		}
	}
	vaultWide := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{Name: "vault-wide"})
	oneSecret := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{Name: "one-secret"})
	admin(t, s, "role assignment create", arm.RoleArgs{Assignee: vaultWide["appId"].(string), Role: "Key Vault Secrets User", Scope: kv1["id"].(string)})
	admin(t, s, "role assignment create", arm.RoleArgs{Assignee: oneSecret["appId"].(string), Role: "Key Vault Secrets User", Scope: kv1["id"].(string) + "/secrets/s"})
	tests := []struct {
		sp            map[string]any
		vault, secret string
		allowed       bool
	}{
		{vaultWide, "kvseg1", "s", true},
		{vaultWide, "kvseg1", "s2", true},
		{vaultWide, "kvseg10", "s", false},
		{oneSecret, "kvseg1", "s", true},
		{oneSecret, "kvseg1", "s2", false},
		{oneSecret, "kvseg10", "s", false},
	}
	for _, tt := range tests {
		_, err := secretsClient(t, s, tt.vault, spCredential(t, s, tt.sp)).GetSecret(ctx, tt.secret, "", nil)
		if (err == nil) != tt.allowed {
			t.Errorf("%s reading %s/%s: err %v, want allowed=%v", tt.sp["displayName"], tt.vault, tt.secret, err, tt.allowed)
		}
	}
}

// TestSecretsNeverLogged sets and reads a canary secret with debug logging
// on and checks that its value never reaches the log.
func TestSecretsNeverLogged(t *testing.T) {
	const canary = "CANARY-7f3a9c-do-not-log"
	var logs bytes.Buffer
	s := startServer(t, azsim.Config{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kv1", ResourceGroup: "rg"})
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	admin(t, s, "keyvault set-policy", arm.PolicyArgs{Name: "kv1", SPN: sp["appId"].(string), Secrets: ptr([]string{"get", "set"})})
	c := secretsClient(t, s, "kv1", spCredential(t, s, sp))
	if _, err := c.SetSecret(context.Background(), "canary", azsecrets.SetSecretParameters{Value: ptr(canary)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSecret(context.Background(), "canary", "", nil); err != nil {
		t.Fatal(err)
	}
	if logs.Len() == 0 {
		t.Fatal("no debug log written: the test would prove nothing")
	}
	if strings.Contains(logs.String(), canary) || strings.Contains(logs.String(), sp["password"].(string)) {
		t.Errorf("a secret value reached azsim's log")
	}
}

// wantResponseError checks an SDK error's status, error code and message.
func wantResponseError(t *testing.T, err error, status int, code, msgPart string) {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("got %v, want a %d %s response error", err, status, code)
	}
	if re.StatusCode != status || re.ErrorCode != code {
		t.Errorf("got %d %s, want %d %s", re.StatusCode, re.ErrorCode, status, code)
	}
	if !strings.Contains(err.Error(), msgPart) {
		t.Errorf("error does not contain %q:\n%v", msgPart, err)
	}
}
