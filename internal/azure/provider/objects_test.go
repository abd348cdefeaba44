package provider_test

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"testing"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/azure/provider"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseCert(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(fixture(t, name))
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// golden compares got with testdata/golden/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from its golden file:\n%s", name, got)
	}
}

// TestObjectsAndFormats mounts every object kind and format and compares
// the files with golden files made from the fixed test PKI in testdata.
func TestObjectsAndFormats(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kv1", ResourceGroup: "rg"})
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	grant(t, s, sp["appId"].(string))
	creds := map[string]string{"clientid": sp["appId"].(string), "clientsecret": sp["password"].(string)}

	leafKeyBlock, _ := pem.Decode(fixture(t, "leaf.key"))
	leafKey, _ := x509.ParsePKCS8PrivateKey(leafKeyBlock.Bytes)
	leaf, inter, root := parseCert(t, "leaf.crt"), parseCert(t, "intermediate.crt"), parseCert(t, "root.crt")
	// Chains imported out of order: the provider must order them.
	pfx, err := pkcs12.Modern.Encode(leafKey, leaf, []*x509.Certificate{root, inter}, "")
	if err != nil {
		t.Fatal(err)
	}
	admin(t, s, "keyvault certificate import", arm.CertArgs{VaultName: "kv1", Name: "tls-pfx", File: base64.StdEncoding.EncodeToString(pfx)})
	pemBundle := string(fixture(t, "root.crt")) + string(fixture(t, "leaf.key")) + string(fixture(t, "leaf.crt")) + string(fixture(t, "intermediate.crt"))
	admin(t, s, "keyvault certificate import", arm.CertArgs{VaultName: "kv1", Name: "tls-pem", File: pemBundle})
	admin(t, s, "keyvault key import", arm.KeyArgs{VaultName: "kv1", Name: "rsa", PEM: string(fixture(t, "rsa.key"))})
	admin(t, s, "keyvault key import", arm.KeyArgs{VaultName: "kv1", Name: "ec", PEM: string(fixture(t, "ec-p384.key"))})
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "b64", Value: base64.StdEncoding.EncodeToString([]byte("binary\x00data"))})
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "hexed", Value: hex.EncodeToString([]byte("hex data"))})

	e := startProvider(t, s, cloudEnv, func(rc *provider.RunConfig) { rc.SeparateCertKey = true })
	resp, err := e.mount(e.baseParams(
		"objectName: tls-pfx\nobjectType: secret",
		"objectName: tls-pem\nobjectType: secret\nobjectAlias: tls/pem.pem\nfilePermission: \"0400\"",
		"objectName: tls-pfx\nobjectType: cert\nobjectAlias: leaf.crt.pem",
		"objectName: tls-pfx\nobjectType: secret\nobjectFormat: pfx\nobjectAlias: tls.pfx.b64",
		"objectName: tls-pem\nobjectType: secret\nobjectFormat: PFX\nobjectAlias: ignored-pfx-on-pem",
		"objectName: rsa\nobjectType: key",
		"objectName: ec\nobjectType: key",
		"objectName: b64\nobjectType: secret\nobjectEncoding: base64",
		"objectName: hexed\nobjectType: secret\nobjectEncoding: hex",
	), creds)
	if err != nil {
		t.Fatal(err)
	}
	files := filesOf(resp)
	for path, g := range map[string]string{
		"tls-pfx": "cert-chain.pem", "tls/pem.pem": "cert-pem-as-stored.pem", "tls-pfx.crt": "chain-only.pem", "tls-pfx.key": "key-only.pem",
		"leaf.crt.pem": "leaf.pem", "rsa": "rsa.pub.pem", "ec": "ec-p384.pub.pem", "ignored-pfx-on-pem": "cert-pem-as-stored.pem",
	} {
		f := files[path]
		if f == nil {
			t.Errorf("no file %s; got %d files", path, len(files))
			continue
		}
		golden(t, g, f.Contents)
	}
	if want := string(fixture(t, "leaf.crt")) + string(fixture(t, "intermediate.crt")) + string(fixture(t, "root.crt")); string(files["tls-pfx.crt"].Contents) != want {
		t.Error("chain is not leaf, intermediate, root")
	}
	if string(files["tls-pfx.key"].Contents) != string(fixture(t, "leaf.key")) {
		t.Error("key file is not the leaf's PKCS#8 key")
	}
	if files["tls/pem.pem"].Mode != 0o400 || files["rsa"].Mode != 0o644 {
		t.Errorf("modes %o and %o, want 0400 and 0644", files["tls/pem.pem"].Mode, files["rsa"].Mode)
	}
	if string(files["b64"].Contents) != "binary\x00data" || string(files["hexed"].Contents) != "hex data" {
		t.Errorf("encodings not applied")
	}
	raw, err := base64.StdEncoding.DecodeString(string(files["tls.pfx.b64"].Contents))
	if err != nil {
		t.Fatalf("objectFormat pfx is not the base64 PFX: %v", err)
	}
	if _, c, chain, err := pkcs12.DecodeChain(raw, ""); err != nil || !c.Equal(leaf) || len(chain) != 2 {
		t.Errorf("PFX content: %v", err)
	}
}

// TestVersionHistory mounts exactly N newest enabled versions, and starts
// at a pinned objectVersion.
func TestVersionHistory(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kv1", ResourceGroup: "rg"})
	var versions []string
	for _, v := range []string{"v1", "v2", "v3-disabled", "v4"} {
		out := admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "rotating", Value: v, Disabled: v == "v3-disabled"})
		versions = append(versions, filepath.Base(out["id"].(string)))
	}
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	grant(t, s, sp["appId"].(string))
	creds := map[string]string{"clientid": sp["appId"].(string), "clientsecret": sp["password"].(string)}
	e := startProvider(t, s, cloudEnv, nil)

	resp, err := e.mount(e.baseParams("objectName: rotating\nobjectType: secret\nobjectVersionHistory: 2"), creds)
	if err != nil {
		t.Fatal(err)
	}
	files := filesOf(resp)
	if len(files) != 2 || string(files["rotating/0"].Contents) != "v4" || string(files["rotating/1"].Contents) != "v2" {
		t.Fatalf("history files %v, want exactly rotating/0=v4 and rotating/1=v2", resp.Files)
	}
	if v := resp.ObjectVersion; len(v) != 2 || v[0].Id != "secret/rotating/0" || v[0].Version != versions[3] {
		t.Errorf("versions %v", v)
	}
	resp, err = e.mount(e.baseParams("objectName: rotating\nobjectType: secret\nobjectVersionHistory: 5\nobjectVersion: "+versions[1]), creds)
	if err != nil {
		t.Fatal(err)
	}
	if files := filesOf(resp); len(files) != 2 || string(files["rotating/0"].Contents) != "v2" || string(files["rotating/1"].Contents) != "v1" {
		t.Fatalf("pinned history files %v", resp.Files)
	}
}

// TestOrderPEMCertSecrets: with --order-pem-cert-secrets a PEM-backed
// certificate secret is rebuilt (key, then leaf → root) like a PFX-backed
// one; by default it is written as stored (TestObjectsAndFormats).
func TestOrderPEMCertSecrets(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kv1", ResourceGroup: "rg"})
	pemBundle := string(fixture(t, "root.crt")) + string(fixture(t, "leaf.key")) + string(fixture(t, "leaf.crt")) + string(fixture(t, "intermediate.crt"))
	admin(t, s, "keyvault certificate import", arm.CertArgs{VaultName: "kv1", Name: "tls-pem", File: pemBundle})
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	grant(t, s, sp["appId"].(string))
	e := startProvider(t, s, cloudEnv, func(rc *provider.RunConfig) { rc.OrderPEMSecrets = true })
	resp, err := e.mount(e.baseParams("objectName: tls-pem\nobjectType: secret"), spCreds(sp))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "cert-chain.pem", filesOf(resp)["tls-pem"].Contents)
}
