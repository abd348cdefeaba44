package provider_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/azure/provider"
)

// spMount is a service principal's credentials for nodePublishSecretRef.
func spMount(t *testing.T, s *azsim.Server) (map[string]string, string) {
	t.Helper()
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{Name: "csi"})
	return map[string]string{"clientid": sp["appId"].(string), "clientsecret": sp["password"].(string)}, sp["appId"].(string)
}

// TestOptionalObjects: an optional object that does not exist, or is
// disabled, leaves its file out and is reported with an empty version,
// the mount goes ahead; when it is created, the next rotation writes it.
// A 403 still fails unless optionalWhenForbidden says otherwise, and a
// required object that is missing fails as before.
func TestOptionalObjects(t *testing.T) {
	clk := newClock()
	s, e, creds := presentAndDisabled(t, func(rc *provider.RunConfig) { rc.Now = clk.now })

	p := e.baseParams("objectName: secret1\nobjectType: secret", "objectName: later\nobjectType: secret\noptional: true",
		"objectName: off\nobjectType: secret\noptional: true")
	resp, err := e.mount(p, creds)
	if err != nil {
		t.Fatal(err)
	}
	files := filesOf(resp)
	if len(files) != 1 || string(files["secret1"].Contents) != "present" {
		t.Fatalf("files %v", files)
	}
	versions := map[string]string{}
	for _, v := range resp.GetObjectVersion() {
		versions[v.Id] = v.Version
	}
	if v, ok := versions["secret/later"]; !ok || v != "" || versions["secret/secret1"] == "" {
		t.Errorf("versions %v: the missing optional object must be recorded with an empty version", versions)
	}

	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "later", Value: "appeared"})
	resp, err = e.republish(p, creds, resp)
	if err != nil {
		t.Fatal(err)
	}
	if f := filesOf(resp)["later"]; f == nil || string(f.Contents) != "appeared" {
		t.Errorf("the object created later is not written by rotation: %v", filesOf(resp))
	}
	// Disabled later: its file leaves the volume on the next rotation,
	// and the pod is told (not only on its first mount).
	admin(t, s, "keyvault secret set-attributes", arm.SecretAttrArgs{VaultName: "kv1", Name: "later", Enabled: ptr(false)})
	clk.advance(2 * time.Minute) // the next rotation epoch
	resp, err = e.republish(p, creds, resp)
	if err != nil || filesOf(resp)["later"] != nil {
		t.Fatalf("after disabling: %v, files %v", err, filesOf(resp))
	}
	if !strings.Contains(e.logs.String(), `object=secret/later why="it is disabled" removed=true`) {
		t.Errorf("the removal of an optional object's file was not reported:\n%s", e.logs.String())
	}

	// A required object that is missing still fails.
	_, err = e.mount(e.baseParams("objectName: nothere\nobjectType: secret"), creds)
	wantCode(t, err, codes.NotFound, "nothere")

	// Forbidden: the identity has no key permission in kv2.
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kv2", ResourceGroup: "rg"})
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv2", Name: "s", Value: "v"})
	forbidden := e.baseParams("objectName: s\nobjectType: secret\noptional: true")
	forbidden["keyvaultName"] = "kv2"
	_, err = e.mount(forbidden, creds)
	wantCode(t, err, codes.PermissionDenied, "kv2", "set-policy")
	forbidden["objects"] = objectsYAML("objectName: s\nobjectType: secret\noptional: true\noptionalWhenForbidden: true")
	if resp, err := e.mount(forbidden, creds); err != nil || len(resp.GetFiles()) != 0 {
		t.Errorf("optionalWhenForbidden: %v %v", resp, err)
	}
}

// presentAndDisabled is a provider reading kv1, which holds secret1
// ("present") and a disabled secret "off", with a service principal
// allowed to read it.
func presentAndDisabled(t *testing.T, tune func(*provider.RunConfig)) (*azsim.Server, *env, map[string]string) {
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "present")
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "off", Value: "x", Disabled: true})
	creds, app := spMount(t, s)
	grant(t, s, app)
	return s, startProvider(t, s, cloudEnv, tune), creds
}

// TestEveryFailureListed: when several objects fail, the message names
// each with its own reason and fix.
func TestEveryFailureListed(t *testing.T) {
	_, e, creds := presentAndDisabled(t, nil)
	_, err := e.mount(e.baseParams("objectName: secret1\nobjectType: secret", "objectName: gone\nobjectType: secret",
		"objectName: off\nobjectType: secret", "objectName: k\nobjectType: key"), creds)
	wantCode(t, err, codes.NotFound, "3 objects failed", `(1) secret "gone" does not exist`, `(2) secret "off" in key vault "kv1" is disabled`, `(3) key "k" does not exist`)
}

// TestJSONFields: fields of a JSON secret are written to their own files,
// with their own modes, next to the secret; a missing field fails the mount
// naming the object and field, never the value.
func TestJSONFields(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "x")
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "db", Value: `{"user":"app","password":"CANARY-pw-91","port":5432,"replicas":["r1","r2"]}`})
	creds, app := spMount(t, s)
	grant(t, s, app)
	e := startProvider(t, s, cloudEnv, nil)
	p := e.baseParams("objectName: db\nobjectType: secret\njsonFields:\n- {path: user, objectAlias: db/user}\n- {path: password, objectAlias: db/password, filePermission: \"0400\"}\n- {path: 'replicas[1]', objectAlias: db/replica}\n- {path: port, objectAlias: db/port}")
	p["objects"] = strings.Replace(p["objects"], "objectName: db\n", "objectName: db\n    objectAlias: db/all.json\n", 1)
	resp, err := e.mount(p, creds)
	if err != nil {
		t.Fatal(err)
	}
	files := filesOf(resp)
	for path, want := range map[string]string{"db/user": "app", "db/password": "CANARY-pw-91", "db/replica": "r2", "db/port": "5432"} {
		if f := files[path]; f == nil || string(f.Contents) != want {
			t.Errorf("%s: %v, want %q", path, f, want)
		}
	}
	if files["db/password"].Mode != 0o400 || files["db/user"].Mode != 0o644 || files["db/all.json"] == nil {
		t.Errorf("modes or the whole secret: %v", files)
	}
	p = e.baseParams("objectName: db\nobjectType: secret\njsonFields:\n- {path: secret.key, objectAlias: k}")
	_, err = e.mount(p, creds)
	wantCode(t, err, codes.InvalidArgument, `secret "db"`, "secret.key", `has no key "secret"`)
	if err != nil && strings.Contains(err.Error(), "CANARY") {
		t.Errorf("the error holds the value: %v", err)
	}
}

// TestObjectsFromSeveralVaults: objects may name their own vault; each is
// read there with the mount's identity, and an error names its vault.
func TestObjectsFromSeveralVaults(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "from-kv1")
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kv2", ResourceGroup: "rg"})
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv2", Name: "secret1", Value: "from-kv2"})
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kv3", ResourceGroup: "rg"})
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv3", Name: "s", Value: "v"})
	creds, app := spMount(t, s)
	grant(t, s, app)
	admin(t, s, "keyvault set-policy", arm.PolicyArgs{Name: "kv2", SPN: app, Secrets: ptr([]string{"get"})})
	e := startProvider(t, s, cloudEnv, nil)
	p := e.baseParams("objectName: secret1\nobjectType: secret", "objectName: secret1\nobjectType: secret\nkeyvaultName: kv2\nobjectAlias: secret1-kv2")
	resp, err := e.mount(p, creds)
	if err != nil {
		t.Fatal(err)
	}
	files := filesOf(resp)
	if string(files["secret1"].Contents) != "from-kv1" || string(files["secret1-kv2"].Contents) != "from-kv2" {
		t.Errorf("files %v", files)
	}
	p = e.baseParams("objectName: secret1\nobjectType: secret", "objectName: s\nobjectType: secret\nkeyvaultName: kv3")
	_, err = e.mount(p, creds)
	wantCode(t, err, codes.PermissionDenied, `key vault "kv3"`, "az keyvault set-policy -n kv3")
}
