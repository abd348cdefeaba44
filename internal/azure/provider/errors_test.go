package provider_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/arm"
)

// TestBadInputs is the provider's bad-input table through real gRPC: each
// row gets its documented code and message, and no file is returned.
func TestBadInputs(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "v")
	admin(t, s, "keyvault key create", arm.KeyArgs{VaultName: "kv1", Name: "sym", KTY: "oct"})
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "off", Value: "v", Disabled: true})
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "plain", Value: "not base64!"})
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	grant(t, s, sp["appId"].(string))
	nogrant := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	creds := map[string]string{"clientid": sp["appId"].(string), "clientsecret": sp["password"].(string)}
	noCreds := map[string]string{"clientid": nogrant["appId"].(string), "clientsecret": nogrant["password"].(string)}
	e := startProvider(t, s, cloudEnv, nil)

	obj := func(o string) func(params) { return func(p params) { p["objects"] = objectsYAML(o) } }
	set := func(k, v string) func(params) { return func(p params) { p[k] = v } }
	tests := []struct {
		name    string
		edit    func(params)
		secrets map[string]string
		code    codes.Code
		parts   []string
	}{
		{"traversal alias", obj("objectName: secret1\nobjectType: secret\nobjectAlias: ../../etc/shadow"), creds, codes.InvalidArgument, []string{"'..' is not allowed"}},
		{"absolute alias", obj("objectName: secret1\nobjectType: secret\nobjectAlias: /etc/shadow"), creds, codes.InvalidArgument, []string{"absolute paths"}},
		{"file and directory", func(p params) {
			p["objects"] = objectsYAML("objectName: secret1\nobjectType: secret", "objectName: off\nobjectType: secret\nobjectAlias: secret1/x")
		}, creds, codes.InvalidArgument, []string{`so it cannot also be a directory`}},
		{"bad mode", obj("objectName: secret1\nobjectType: secret\nfilePermission: \"0900\""), creds, codes.InvalidArgument, []string{"filePermission"}},
		{"bad YAML", set("objects", "array:\n  - |\n    objectName: [x"), creds, codes.InvalidArgument, []string{"objects[0]"}},
		{"unknown type", obj("objectName: secret1\nobjectType: configmap"), creds, codes.InvalidArgument, []string{"not one of secret, key, cert"}},
		{"bad vault name", set("keyvaultName", "kv_1"), creds, codes.InvalidArgument, []string{"keyvaultName", "not a key vault name"}},
		{"missing tenant", set("tenantId", ""), creds, codes.InvalidArgument, []string{"tenantId is not provided"}},
		{"several mistakes", func(p params) {
			p["keyvaultName"] = "kv_1"
			p["objects"] = objectsYAML("objectName: secret1\nobjectType: secrets", "objectName: s2\nobjectType: secret\nobjectAlias: /etc/shadow")
		}, creds, codes.InvalidArgument, []string{"3 problems", "(1) parameter keyvaultName", "(2) objects[0 secret1]", "(3) objects[1 s2]", "absolute paths"}},
		{"conflicting modes", func(p params) { p["usePodIdentity"], p["useVMManagedIdentity"] = "true", "true" }, creds, codes.InvalidArgument, []string{"only one identity mode"}},
		{"oversized objects", set("objects", "array:\n"+strings.Repeat("  - |\n    objectName: s\n", 20000)), creds, codes.InvalidArgument, []string{"the limit is"}},
		{"too many history versions", obj("objectName: secret1\nobjectType: secret\nobjectVersionHistory: 1001"), creds, codes.InvalidArgument, []string{"more than 1000 versions"}},
		{"no credentials", nil, nil, codes.InvalidArgument, []string{"nodePublishSecretRef"}},
		{"wrong secret", nil, map[string]string{"clientid": sp["appId"].(string), "clientsecret": "nope"}, codes.Unauthenticated, []string{"wrong or expired"}},
		{"unknown app", nil, map[string]string{"clientid": "00000000-0000-0000-0000-0000000000aa", "clientsecret": "x"}, codes.Unauthenticated, []string{"does not exist in tenant"}},
		{"not allowed", nil, noCreds, codes.PermissionDenied, []string{"may not read secret \"secret1\"", "az keyvault set-policy -n kv1 --secret-permissions get --spn " + nogrant["appId"].(string)}},
		{"missing secret", obj("objectName: nothere\nobjectType: secret"), creds, codes.NotFound, []string{`secret "nothere" does not exist in key vault "kv1"`}},
		{"missing version", obj("objectName: secret1\nobjectType: secret\nobjectVersion: 0123456789abcdef0123456789abcdef"), creds, codes.NotFound, []string{"version 0123456789abcdef0123456789abcdef"}},
		{"disabled secret", obj("objectName: off\nobjectType: secret"), creds, codes.FailedPrecondition, []string{"is disabled"}},
		{"symmetric key", obj("objectName: sym\nobjectType: key"), creds, codes.InvalidArgument, []string{"symmetric (oct) key"}},
		{"wrong encoding", obj("objectName: plain\nobjectType: secret\nobjectEncoding: base64"), creds, codes.InvalidArgument, []string{"not standard base64"}},
		{"vault of another tenant", set("tenantId", "0b0b0b0b-0000-4000-8000-00000000000b"), creds, codes.Unauthenticated, nil},
		{"cloud file missing", func(p params) { p["cloudName"], p["cloudEnvFileName"] = "AzureStackCloud", "/nonexistent/cloud.json" }, creds, codes.InvalidArgument, []string{"read cloud environment file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := e.baseParams("objectName: secret1\nobjectType: secret")
			if tt.edit != nil {
				tt.edit(p)
			}
			resp, err := e.mount(p, tt.secrets)
			if len(resp.GetFiles()) != 0 {
				t.Fatalf("files returned with an error: %d", len(resp.GetFiles()))
			}
			wantCode(t, err, tt.code, tt.parts...)
		})
	}
	if strings.Contains(e.logs.String(), sp["password"].(string)) || strings.Contains(e.logs.String(), nogrant["password"].(string)) {
		t.Error("a client secret reached the provider's log")
	}
}

// TestClassWarningsMount: what upstream mounts, kvmount mounts: a misspelt
// field and a file written twice (the last object's wins, as upstream's
// driver writes it), with the warnings logged (and, with API access,
// recorded on the pod).
func TestClassWarningsMount(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "first")
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "other", Value: "second"})
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	grant(t, s, sp["appId"].(string))
	e := startProvider(t, s, cloudEnv, nil)
	p := e.baseParams("objectName: secret1\nobjectType: secret\nobjectVersionHistroy: 2", "objectName: other\nobjectType: secret\nobjectAlias: secret1")
	resp, err := e.mount(p, spCreds(sp))
	if err != nil {
		t.Fatal(err)
	}
	if f := filesOf(resp)["secret1"]; len(resp.Files) != 1 || string(f.Contents) != "second" {
		t.Errorf("files %v, want one secret1 with the last object's value", resp.Files)
	}
	logs := e.logs.String()
	for _, want := range []string{"did you mean objectVersionHistory?", `file \"secret1\" is also written by objects[0]`} {
		if !strings.Contains(logs, want) {
			t.Errorf("no warning %q in the log:\n%s", want, logs)
		}
	}
}
