package config

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kvmount.dev/kvmount/internal/atomicdir"
)

// attrs builds a Mount request's attributes JSON from a base that is
// valid for VM managed identity, with overrides ("" deletes a key).
func attrs(over map[string]string) string {
	a := map[string]string{
		"csi.storage.k8s.io/pod.name": "p", "csi.storage.k8s.io/pod.namespace": "ns",
		"useVMManagedIdentity": "true", "keyvaultName": "kv1", "tenantId": "t",
		"objects": "array:\n  - |\n    objectName: secret1\n    objectType: secret\n",
	}
	for k, v := range over {
		if v == "" {
			delete(a, k)
		} else {
			a[k] = v
		}
	}
	b, _ := json.Marshal(a)
	return string(b)
}

func objects(entries ...string) string {
	s := "array:\n"
	for _, e := range entries {
		s += "  - |\n"
		for _, line := range strings.Split(e, "\n") {
			s += "    " + line + "\n"
		}
	}
	return s
}

// TestParseSeedClasses parses the seed's three SecretProviderClasses as the
// driver sends them.
func TestParseSeedClasses(t *testing.T) {
	seedObjects := objects("objectName: secret1\nobjectType: secret             # object types: secret, key, or cert\nobjectVersion: \"\"",
		"objectName: key1\nobjectType: key\nobjectVersion: \"\"")
	tests := []struct {
		name   string
		attrs  map[string]string
		mode   Mode
		userID string
	}{
		{"pod identity", map[string]string{"usePodIdentity": "true", "useVMManagedIdentity": "", "cloudName": ""}, ModePodIdentity, ""},
		{"user-assigned", map[string]string{"usePodIdentity": "false", "useVMManagedIdentity": "true", "userAssignedIdentityID": "00000000-0000-0000-0000-000000000001"}, ModeVMManagedIdentity, "00000000-0000-0000-0000-000000000001"},
		{"system-assigned", map[string]string{"usePodIdentity": "false", "useVMManagedIdentity": "true", "userAssignedIdentityID": ""}, ModeVMManagedIdentity, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.attrs["objects"] = seedObjects
			c, err := Parse(attrs(tt.attrs), "", `"420"`, Defaults{})
			if err != nil {
				t.Fatal(err)
			}
			if c.Mode != tt.mode || c.UserAssignedIdentityID != tt.userID || c.Cloud.Name != "AzurePublicCloud" {
				t.Errorf("mode %v id %q cloud %q", c.Mode, c.UserAssignedIdentityID, c.Cloud.Name)
			}
			if len(c.Objects) != 2 || c.Objects[0].ID() != "secret/secret1" || c.Objects[1].File != "key1" || c.Objects[1].Mode != 0o644 {
				t.Errorf("objects %+v", c.Objects)
			}
		})
	}
}

func TestParseObjectsFields(t *testing.T) {
	c, err := Parse(attrs(map[string]string{"objects": objects(
		"objectName: s\nobjectType: Secret\nobjectAlias: dir/S\nobjectEncoding: BASE64\nfilePermission: \"0400\"",
		"objectName: h\nobjectType: secret\nobjectVersionHistory: 3\nobjectVersion: latest",
		"objectName: c\nobjectType: secret\nobjectFormat: PFX\nfilePermission: 0600",
		"objectName: off\nobjectType: secret")}), "", "", Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	s, h, pfx := c.Objects[0], c.Objects[1], c.Objects[2]
	if s.Type != TypeSecret || s.File != "dir/S" || s.Encoding != EncodingBase64 || s.Mode != 0o400 {
		t.Errorf("first object %+v", s)
	}
	if got := strings.Join(h.Files(), ","); got != "h/0,h/1,h/2" || h.Version != "" {
		t.Errorf("history files %s, version %q", got, h.Version)
	}
	if pfx.Format != FormatPFX || pfx.Mode != 0o600 {
		t.Errorf("unquoted YAML octal mode: %+v", pfx)
	}
	if off := c.Objects[3]; off.Name != "off" {
		t.Errorf("objectName: off read as %q; YAML 1.2 (upstream's yaml.v3) keeps it a string", off.Name)
	}
}

// saToken is a JWT-shaped service-account token for subject sub (unsigned:
// the provider does not verify it, Entra ID does).
func saToken(sub string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`{"sub":"`+sub+`"}`)) + ".c2ln"
}

func tokensAttr(tok string) string {
	return `{"api://AzureADTokenExchange":{"token":"` + tok + `","expirationTimestamp":"2030-01-01T00:00:00Z"}}`
}

func TestParseIdentityModes(t *testing.T) {
	tok := saToken("system:serviceaccount:ns:app")
	c, err := Parse(attrs(map[string]string{"useVMManagedIdentity": "", "clientID": "cid", "csi.storage.k8s.io/serviceAccount.tokens": tokensAttr(tok)}), "", "", Defaults{})
	if err != nil || c.Mode != ModeWorkloadIdentity || c.ServiceAccountToken != tok {
		t.Fatalf("workload identity: %+v %v", c, err)
	}
	c, err = Parse(attrs(map[string]string{"useVMManagedIdentity": ""}), `{"ClientID":"a","CLIENTSECRET":"b"}`, "", Defaults{})
	if err != nil || c.Mode != ModeServicePrincipal || c.SPClientID != "a" || c.SPClientSecret != "b" {
		t.Fatalf("service principal: %+v %v", c, err)
	}
	both := `{"api://AzureADTokenExchange":{"token":"` + saToken("wi") + `"},"api://AKSIdentityBinding":{"token":"` + tok + `"}}`
	c, err = Parse(attrs(map[string]string{"useVMManagedIdentity": "", "useAzureTokenProxy": "true", "clientID": testClientID,
		"csi.storage.k8s.io/serviceAccount.tokens": both}), "", "", Defaults{})
	if err != nil || c.Mode != ModeIdentityBinding || c.ServiceAccountToken != tok || c.ClientID != testClientID {
		t.Fatalf("identity binding: %+v %v", c, err)
	}
}

const testClientID = "8be41f21-6895-467b-abe5-4bc2261121fe"

// TestParseExtensions: kvmount's own object fields, all opt-in.
func TestParseExtensions(t *testing.T) {
	c, err := Parse(attrs(map[string]string{"objects": objects(
		"objectName: s\nobjectType: secret\noptional: true\noptionalWhenForbidden: \"true\"",
		"objectName: t\nobjectType: secret\nkeyvaultName: other-kv\ntenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47",
		"objectName: db\nobjectType: secret\nfilePermission: \"0400\"\njsonFields:\n- path: user\n  objectAlias: db-user\n- path: creds.password\n  objectAlias: pw/db\n  filePermission: \"0440\"")}), "", "", Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	o := c.Objects
	if !o[0].Optional || !o[0].OptionalWhenForbidden || o[1].Optional {
		t.Errorf("optional: %+v %+v", o[0], o[1])
	}
	if c.VaultOf(o[0]) != c.VaultName || c.VaultOf(o[1]) != "other-kv" || c.TenantOf(o[1]) != "72f988bf-86f1-41af-91ab-2d7cd011db47" || c.TenantOf(o[0]) != c.TenantID {
		t.Errorf("vaults: %+v", o[1])
	}
	want := []JSONField{{Path: "user", File: "db-user", Mode: 0o400}, {Path: "creds.password", File: "pw/db", Mode: 0o440}}
	if len(o[2].JSONFields) != 2 || o[2].JSONFields[0] != want[0] || o[2].JSONFields[1] != want[1] {
		t.Errorf("json fields %+v", o[2].JSONFields)
	}
	if got := strings.Join(o[2].Files(), ","); got != "db,db-user,pw/db" {
		t.Errorf("files %s", got)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings: %v", c.Warnings)
	}
}

func TestCloudEnvFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "cloud.json")
	os.WriteFile(f, []byte(`{"name":"AzureStackCloud","activeDirectoryEndpoint":"https://login.azsim.test","keyVaultEndpoint":"https://vault.azsim.test/","keyVaultDNSSuffix":"vault.azsim.test"}`), 0o600)
	c, err := Parse(attrs(map[string]string{"cloudName": "AzureStackCloud", "cloudEnvFileName": f}), "", "", Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Cloud.KeyVaultResource != "https://vault.azsim.test" || c.Cloud.VaultURL("KV1") != "https://kv1.vault.azsim.test" || c.Cloud.AuthorityHost != "https://login.azsim.test/" {
		t.Errorf("cloud %+v", c.Cloud)
	}
	c, err = Parse(attrs(map[string]string{"cloudName": ""}), "", "", Defaults{CloudName: "AzureStackCloud", CloudEnvFile: f})
	if err != nil || c.Cloud.KeyVaultDNSSuffix != "vault.azsim.test" {
		t.Errorf("provider defaults not used: %+v %v", c.Cloud, err)
	}
}

// TestEnvFileRefuses: an environment file's values are the URLs the
// provider sends credentials to; each must be what it claims.
func TestEnvFileRefuses(t *testing.T) {
	const good = `{"activeDirectoryEndpoint":"https://login.x/","keyVaultEndpoint":"https://vault.x","keyVaultDNSSuffix":"vault.x"}`
	if _, err := decodeEnvFile([]byte(good)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ file, want string }{
		{`{"activeDirectoryEndpoint":"login.x","keyVaultEndpoint":"https://vault.x","keyVaultDNSSuffix":"vault.x"}`, "activeDirectoryEndpoint"},
		{`{"activeDirectoryEndpoint":"ftp://login.x/","keyVaultEndpoint":"https://vault.x","keyVaultDNSSuffix":"vault.x"}`, "activeDirectoryEndpoint"},
		{`{"activeDirectoryEndpoint":"https://login.x/","keyVaultEndpoint":"https://u:p@vault.x","keyVaultDNSSuffix":"vault.x"}`, "keyVaultEndpoint"},
		{`{"activeDirectoryEndpoint":"https://login.x/","keyVaultEndpoint":"https://vault.x","keyVaultDNSSuffix":"evil.example/steal?x="}`, "keyVaultDNSSuffix"},
		{`{"activeDirectoryEndpoint":"https://login.x/","keyVaultEndpoint":"https://vault.x","keyVaultDNSSuffix":"a@b"}`, "keyVaultDNSSuffix"},
		{`{"activeDirectoryEndpoint":"https://login.x/","keyVaultEndpoint":"https://vault.x"}`, "must set"},
		{`[1]`, "not valid JSON"},
	} {
		if _, err := decodeEnvFile([]byte(tt.file)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error naming %s", tt.file, err, tt.want)
		}
	}
}

// FuzzEnvFile: whatever an environment file holds, an accepted one builds
// vault URLs whose host is the vault's and authority URLs that parse.
func FuzzEnvFile(f *testing.F) {
	f.Add([]byte(`{"activeDirectoryEndpoint":"https://login.x/","keyVaultEndpoint":"https://vault.x","keyVaultDNSSuffix":"vault.x"}`))
	f.Add([]byte(`{"activeDirectoryEndpoint":"http://127.0.0.1:8443","keyVaultEndpoint":"https://v","keyVaultDNSSuffix":".v.local:8443."}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeEnvFile(data)
		if err != nil {
			return
		}
		u, err := url.Parse(c.VaultURL("kv1"))
		if err != nil || u.Host != "kv1."+c.KeyVaultDNSSuffix || u.Path != "" || u.RawQuery != "" || u.User != nil {
			t.Fatalf("suffix %q makes vault URL %q", c.KeyVaultDNSSuffix, c.VaultURL("kv1"))
		}
		if a, err := url.Parse(c.AuthorityHost); err != nil || a.Host == "" {
			t.Fatalf("authority %q", c.AuthorityHost)
		}
	})
}

// TestParseRefuses is the bad-input table: every row is refused with an
// Error naming the field or object, and the fix.
func TestParseRefuses(t *testing.T) {
	tests := []struct {
		name     string
		attrs    map[string]string
		secrets  string
		perm     string
		wantPart string
	}{
		{"traversal alias", map[string]string{"objects": objects("objectName: s\nobjectType: secret\nobjectAlias: ../../etc/passwd")}, "", "", "'..' is not allowed"},
		{"absolute alias", map[string]string{"objects": objects("objectName: s\nobjectType: secret\nobjectAlias: /etc/passwd")}, "", "", "absolute paths are not allowed"},
		{"dot-dot inside name", map[string]string{"objects": objects("objectName: s\nobjectType: secret\nobjectAlias: a..b")}, "", "", "'..' is not allowed"},
		{"empty element", map[string]string{"objects": objects("objectName: s\nobjectType: secret\nobjectAlias: a//b")}, "", "", "empty or '.' path element"},
		{"bad mode digits", map[string]string{"objects": objects("objectName: s\nobjectType: secret\nfilePermission: \"0900\"")}, "", "", `filePermission "0900" is not an octal file mode`},
		{"mode too large", map[string]string{"objects": objects("objectName: s\nobjectType: secret\nfilePermission: \"1777\"")}, "", "", "is not an octal file mode"},
		{"bad YAML", map[string]string{"objects": "array:\n  - |\n    objectName: [unclosed"}, "", "", "objects[0]: yaml: line 1"},
		{"objects not an array", map[string]string{"objects": "objectName: s"}, "", "", "objects has no array (found objectName)"},
		{"unknown type", map[string]string{"objects": objects("objectName: s\nobjectType: kubernetes.io/dockerconfigjson")}, "", "", "is not one of secret, key, cert"},
		{"bad object name", map[string]string{"objects": objects("objectName: my_secret\nobjectType: secret")}, "", "", "is not a Key Vault object name"},
		{"empty object name", map[string]string{"objects": objects("objectType: secret\nobjectAlias: x")}, "", "", "is not a Key Vault object name"},
		{"bad version", map[string]string{"objects": objects("objectName: s\nobjectType: secret\nobjectVersion: v2")}, "", "", "is not a Key Vault version"},
		{"encoding on a key", map[string]string{"objects": objects("objectName: k\nobjectType: key\nobjectEncoding: base64")}, "", "", "objectEncoding applies to objectType secret only"},
		{"bad encoding", map[string]string{"objects": objects("objectName: s\nobjectType: secret\nobjectEncoding: rot13")}, "", "", "is not one of utf-8, base64, hex"},
		{"history out of range", map[string]string{"objects": objects("objectName: s\nobjectType: secret\nobjectVersionHistory: 5000")}, "", "", "objectVersionHistory 5000 is more than 1000"},
		{"lowercase pfx on a cert", map[string]string{"objects": objects("objectName: c\nobjectType: cert\nobjectFormat: pfx")}, "", "", "objectFormat pfx applies to objectType secret"},
		{"no objects", map[string]string{"objects": ""}, "", "", "objects is not set"},
		{"oversized objects", map[string]string{"objects": "array:\n" + strings.Repeat("  - |\n    objectName: s\n", 20000)}, "", "", "the limit is"},
		{"bad vault name", map[string]string{"keyvaultName": "https://kv1.vault.azure.net"}, "", "", "is not a key vault name"},
		{"short vault name", map[string]string{"keyvaultName": "k"}, "", "", "is not a key vault name"},
		{"missing vault", map[string]string{"keyvaultName": ""}, "", "", "keyvaultName is not provided"},
		{"missing tenant", map[string]string{"tenantId": ""}, "", "", "tenantId is not provided"},
		{"conflicting modes", map[string]string{"usePodIdentity": "true"}, "", "", "only one identity mode"},
		{"bad boolean", map[string]string{"useVMManagedIdentity": "yes please"}, "", "", "is not a boolean"},
		{"bad user-assigned ID", map[string]string{"userAssignedIdentityID": "my-identity"}, "", "", "neither a client ID"},
		{"workload identity without token", map[string]string{"useVMManagedIdentity": "", "clientID": "c"}, "", "", "tokenRequests"},
		{"service principal without secret", map[string]string{"useVMManagedIdentity": ""}, "", "", "nodePublishSecretRef"},
		{"service principal missing clientsecret", map[string]string{"useVMManagedIdentity": ""}, `{"clientid":"a"}`, "", "no clientsecret key"},
		{"unknown cloud", map[string]string{"cloudName": "AzureMoonCloud"}, "", "", "is not a known cloud"},
		{"stack cloud without file", map[string]string{"cloudName": "AzureStackCloud"}, "", "", "needs cloudEnvFileName"},
		{"no pod name", map[string]string{"csi.storage.k8s.io/pod.name": ""}, "", "", "podInfoOnMount"},
		{"identity binding without clientID", map[string]string{"useVMManagedIdentity": "", "useAzureTokenProxy": "true"}, "", "", "identity binding (useAzureTokenProxy) needs clientID"},
		{"identity binding with a bad clientID", map[string]string{"useVMManagedIdentity": "", "useAzureTokenProxy": "true", "clientID": "my-identity"}, "", "", "is not a client ID"},
		{"identity binding without its token", map[string]string{"useVMManagedIdentity": "", "useAzureTokenProxy": "true", "clientID": testClientID,
			"csi.storage.k8s.io/serviceAccount.tokens": tokensAttr(saToken("x"))}, "", "", "audience api://AKSIdentityBinding"},
		{"identity binding and VM identity", map[string]string{"useVMManagedIdentity": "true", "useAzureTokenProxy": "true"}, "", "", "only one identity mode"},
		{"bad driver permission", nil, "", `"abc"`, "is not a number"},
		{"optional not a boolean", map[string]string{"objects": objects("objectName: s\nobjectType: secret\noptional: maybe")}, "", "", `optional "maybe" is not a boolean`},
		{"forbidden without optional", map[string]string{"objects": objects("objectName: s\nobjectType: secret\noptionalWhenForbidden: true")}, "", "", "add optional: true"},
		{"object vault not a name", map[string]string{"objects": objects("objectName: s\nobjectType: secret\nkeyvaultName: https://kv2.vault.azure.net")}, "", "", "is not a key vault name"},
		{"object tenant", map[string]string{"objects": objects("objectName: s\nobjectType: secret\ntenantId: ../x")}, "", "", "is not a tenant ID"},
		{"json fields on a key", map[string]string{"objects": objects("objectName: k\nobjectType: key\njsonFields:\n- {path: a, objectAlias: a}")}, "", "", "jsonFields apply to objectType secret only"},
		{"json field without alias", map[string]string{"objects": objects("objectName: s\nobjectType: secret\njsonFields:\n- {path: user}")}, "", "", "objectAlias is required"},
		{"json field bad path", map[string]string{"objects": objects("objectName: s\nobjectType: secret\njsonFields:\n- {path: 'a[x]', objectAlias: a}")}, "", "", "is not an array index"},
		{"json field traversal", map[string]string{"objects": objects("objectName: s\nobjectType: secret\njsonFields:\n- {path: a, objectAlias: ../a}")}, "", "", "'..' is not allowed"},
		{"json field and history", map[string]string{"objects": objects("objectName: s\nobjectType: secret\nobjectVersionHistory: 2\njsonFields:\n- {path: a, objectAlias: a}")}, "", "", "cannot be combined with objectVersionHistory"},
		{"json field collides", map[string]string{"objects": objects("objectName: s\nobjectType: secret\njsonFields:\n- {path: a, objectAlias: s/a}")}, "", "", "cannot also be a directory"},
		{"file and directory", map[string]string{"objects": objects("objectName: a\nobjectType: secret", "objectName: b\nobjectType: secret\nobjectAlias: a/b")}, "", "", `but objects[0] (secret/a) writes the file "a"`},
		{"history dir and alias", map[string]string{"objects": objects("objectName: h\nobjectType: secret\nobjectVersionHistory: 2", "objectName: b\nobjectType: secret\nobjectAlias: h")}, "", "", `so it cannot also be a directory`},
		{"newline in alias", map[string]string{"objects": objects("objectName: s\nobjectType: secret\nobjectAlias: \"a\\nb\"")}, "", "", "control characters"},
		{"tab in alias", map[string]string{"objects": objects("objectName: s\nobjectType: secret\nobjectAlias: \"a\\tb\"")}, "", "", "control characters"},
		{"carriage return in alias", map[string]string{"objects": objects("objectName: s\nobjectType: secret\nobjectAlias: \"a\\rb\"")}, "", "", "control characters"},
		{"tenant traversal", map[string]string{"tenantId": "../../evil"}, "", "", "is not a tenant"},
		{"tenant with slash", map[string]string{"tenantId": "a/b"}, "", "", "is not a tenant"},
		{"token not a JWT", map[string]string{"useVMManagedIdentity": "", "clientID": "c", "csi.storage.k8s.io/serviceAccount.tokens": tokensAttr("not-a-jwt")}, "", "", "is not a JWT with a subject"},
		{"token without subject", map[string]string{"useVMManagedIdentity": "", "clientID": "c", "csi.storage.k8s.io/serviceAccount.tokens": tokensAttr("e30.e30.c2ln")}, "", "", "is not a JWT with a subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(attrs(tt.attrs), tt.secrets, tt.perm, Defaults{})
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a *config.Error", err)
			}
			if !strings.Contains(err.Error(), tt.wantPart) {
				t.Errorf("error %q does not contain %q", err, tt.wantPart)
			}
		})
	}
}

// TestParseListsEveryProblem: a class with several mistakes gets them all
// in one error, in parameter order, so a user fixes them in one round
// trip; errors.As still finds the first, and the message stays bounded.
func TestParseListsEveryProblem(t *testing.T) {
	var many []string
	for i := range 25 {
		many = append(many, fmt.Sprintf("objectName: s%d\nobjectType: nope", i))
	}
	tests := []struct {
		name  string
		attrs map[string]string
		want  []string
	}{
		{"vault and objects", map[string]string{"keyvaultName": "k", "objects": objects("objectName: s\nobjectType: secret\nobjectAlias: ../x", "objectName: my_s\nobjectType: secret")},
			[]string{"keyvaultName", "'..' is not allowed", "is not a Key Vault object name"}},
		{"tenant, identity, cloud", map[string]string{"tenantId": "", "userAssignedIdentityID": "my-identity", "cloudName": "AzureMoonCloud"},
			[]string{"tenantId is not provided", "is not a known cloud", "neither a client ID"}},
		{"bounded", map[string]string{"objects": objects(many...)},
			[]string{"objects[0 s0]", "objects[9 s9]", "(and 15 more)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(attrs(tt.attrs), "", "", Defaults{})
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a *config.Error inside", err)
			}
			msg, at := err.Error(), 0
			for _, w := range tt.want {
				i := strings.Index(msg[at:], w)
				if i < 0 {
					t.Fatalf("error %q lacks %q (after byte %d)", msg, w, at)
				}
				at += i + len(w)
			}
			if len(Split(err)) < len(tt.want) || len(msg) > 4096 {
				t.Errorf("Split gives %d problems, message %d bytes", len(Split(err)), len(msg))
			}
		})
	}
	if Split(nil) != nil {
		t.Error("Split(nil) is not empty")
	}
}

// TestParseWarns: what upstream accepts but is probably a mistake mounts,
// with a warning that names the object and the fix.
func TestParseWarns(t *testing.T) {
	tests := []struct {
		name    string
		attrs   map[string]string
		want    string
		objects int
	}{
		{"unknown object field", map[string]string{"objects": objects("objectName: s\nobjectType: secret\nobjectVerison: abc")}, `objects[0 s]: unknown field "objectVerison" is ignored (as upstream ignores it): did you mean objectVersion?`, 1},
		{"unknown top-level key", map[string]string{"objects": objects("objectName: s\nobjectType: secret") + "arrays: []\n"}, `unknown field "arrays" is ignored (as upstream ignores it): did you mean array?`, 1},
		{"PFX on a key", map[string]string{"objects": objects("objectName: k\nobjectType: key\nobjectFormat: PFX")}, "objectFormat PFX applies to objectType secret only and is ignored for a key", 1},
		{"negative history", map[string]string{"objects": objects("objectName: s\nobjectType: secret\nobjectVersionHistory: -1")}, "objectVersionHistory -1 mounts one version", 1},
		{"same file twice", map[string]string{"objects": objects("objectName: s\nobjectType: secret", "objectName: s\nobjectType: secret")}, `file "s" is also written by objects[0] (secret/s); this object's is mounted`, 2},
		{"alias over a history file", map[string]string{"objects": objects("objectName: a\nobjectType: secret\nobjectVersionHistory: 2", "objectName: b\nobjectType: secret\nobjectAlias: a/1")}, `file "a/1" is also written by objects[0]`, 2},
		{"clientID with VM identity", map[string]string{"clientID": "00000000-0000-0000-0000-000000000009"}, "set userAssignedIdentityID", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(attrs(tt.attrs), "", "", Defaults{})
			if err != nil {
				t.Fatalf("refused what upstream mounts: %v", err)
			}
			var all []string
			for _, w := range c.Warnings {
				all = append(all, w.String())
			}
			if len(c.Objects) != tt.objects || !strings.Contains(strings.Join(all, "\n"), tt.want) {
				t.Errorf("%d objects, warnings %q; want %d objects and a warning containing %q", len(c.Objects), all, tt.objects, tt.want)
			}
		})
	}
}

// FuzzParse feeds arbitrary objects text and parameters: Parse never
// panics, fails only with *Error, and whatever it accepts has valid,
// distinct file paths.
func FuzzParse(f *testing.F) {
	f.Add(objects("objectName: s\nobjectType: secret"), "kv1", "true")
	f.Add(objects("objectName: s\nobjectType: secret\nobjectAlias: a/b\nobjectVersionHistory: 3\nfilePermission: 0600"), "kv-2", "false")
	f.Add("array:\n - |\n   objectName: \x00", "", "")
	f.Add("array: [1, 2]", "k", "1")
	f.Fuzz(func(t *testing.T, objs, vault, vm string) {
		c, err := Parse(attrs(map[string]string{"objects": objs, "keyvaultName": vault, "useVMManagedIdentity": vm}), "", "", Defaults{})
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		var all []string
		seen := map[string]bool{}
		for _, o := range c.Objects {
			for _, p := range o.Files() {
				if ValidatePath(p) != nil {
					t.Fatalf("accepted bad path %q", p)
				}
				if !seen[p] { // a file written twice is a warning: the last one is mounted
					all = append(all, p)
				}
				seen[p] = true
			}
		}
		if err := atomicdir.CheckPaths(all); err != nil {
			t.Fatalf("accepted files that cannot all exist: %v", err)
		}
	})
}
