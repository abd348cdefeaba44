package provider_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/refresh"
)

// TestPushedRefresh: a refresh pushed for a change reads only the objects
// the change names — once per principal however many volumes ask, and
// only with a read begun after the change was noticed — and serves every
// other object as the version the volume has, without a read. A change
// whose version the volume already has costs nothing; a request for all
// objects reads them all; a forged change naming a version that does not
// exist reads once and changes nothing.
func TestPushedRefresh(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kv1", ResourceGroup: "rg"})
	var objs []string
	for i := range 4 {
		admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: fmt.Sprintf("s%d", i), Value: fmt.Sprintf("old%d", i)})
		objs = append(objs, fmt.Sprintf("objectName: s%d\nobjectType: secret", i))
	}
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	grant(t, s, sp["appId"].(string))
	e := startProvider(t, s, cloudEnv, nil)
	pods := make([]params, 5)
	mounted := make([]*v1alpha1.MountResponse, len(pods))
	for i := range pods {
		pods[i] = e.baseParams(objs...)
		pods[i]["csi.storage.k8s.io/pod.name"], pods[i]["csi.storage.k8s.io/pod.uid"] = fmt.Sprintf("pod-%d", i), fmt.Sprintf("uid-%d", i)
		resp, err := e.mount(pods[i], spCreds(sp))
		if err != nil {
			t.Fatal(err)
		}
		mounted[i] = resp
	}
	gets := func() uint64 { return s.KeyVault().Stats("kv1").Gets }
	push := func(i int, r refresh.Request) *v1alpha1.MountResponse {
		t.Helper()
		p := copyParams(pods[i])
		p[refresh.Attribute] = r.Format()
		resp, err := e.republish(p, spCreds(sp), mounted[i])
		if err != nil {
			t.Fatalf("pod %d: %v", i, err)
		}
		return resp
	}

	// A new version of s1: every pod gets it, with one read in all.
	set := admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "s1", Value: "new1"})
	ch := refresh.Change{ID: "ev-1", Vault: "KV1", Kind: refresh.KindSecret, Name: "S1", Version: versionOf(set)}
	before := gets()
	noticed := time.Now()
	for i := range pods {
		resp := push(i, refresh.Request{Since: noticed, Changes: []refresh.Change{ch}})
		files := filesOf(resp)
		if got := string(files["s1"].GetContents()); got != "new1" {
			t.Fatalf("pod %d: s1 is %q after the refresh, want new1", i, got)
		}
		for _, n := range []int{0, 2, 3} {
			if got := string(files[fmt.Sprintf("s%d", n)].GetContents()); got != fmt.Sprintf("old%d", n) {
				t.Fatalf("pod %d: s%d is %q, want the version mounted", i, n, got)
			}
		}
		mounted[i] = resp
	}
	if d := gets() - before; d != 1 {
		t.Fatalf("%d reads for one change of one object for five pods of one principal; want 1", d)
	}

	// The same change again (a duplicate, or a late event): the volumes
	// have its version, so nothing is read.
	before = gets()
	for i := range pods {
		push(i, refresh.Request{Since: time.Now(), Changes: []refresh.Change{ch}})
	}
	if d := gets() - before; d != 0 {
		t.Fatalf("a change the volumes already have read Key Vault %d times; want 0", d)
	}

	// A read begun before the change was noticed does not serve it: a
	// version set after the last read is read afresh even though this
	// epoch's cache holds s1.
	admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: "s1", Value: "newer1"})
	resp := push(0, refresh.Request{Since: time.Now(), Changes: []refresh.Change{{ID: "ev-2", Vault: "kv1", Kind: refresh.KindSecret, Name: "s1"}}})
	if got := string(filesOf(resp)["s1"].GetContents()); got != "newer1" {
		t.Fatalf("s1 is %q after a change without a version, want newer1", got)
	}

	// A forged change naming a version that does not exist: one read of
	// the latest, no change to the files.
	before = gets()
	resp = push(1, refresh.Request{Since: time.Now(), Changes: []refresh.Change{{ID: "forged", Vault: "kv1", Kind: refresh.KindSecret, Name: "s2", Version: "0123456789abcdef0123456789abcdef"}}})
	if got := string(filesOf(resp)["s2"].GetContents()); got != "old2" {
		t.Fatalf("a forged change put %q into s2", got)
	}
	if d := gets() - before; d != 1 {
		t.Fatalf("a forged change cost %d reads, want at most 1", d)
	}

	// A change of another vault, or of a key of the same name, is not
	// this mount's: nothing is read.
	before = gets()
	push(2, refresh.Request{Since: time.Now(), Changes: []refresh.Change{{ID: "x", Vault: "kv2", Kind: refresh.KindSecret, Name: "s3"}, {ID: "y", Vault: "kv1", Kind: refresh.KindKey, Name: "s3"}}})
	if d := gets() - before; d != 0 {
		t.Fatalf("changes of other objects cost %d reads, want 0", d)
	}

	// Refresh on demand: everything afresh.
	before = gets()
	push(3, refresh.Request{Since: time.Now(), All: true})
	if d := gets() - before; d != 4 {
		t.Fatalf("a refresh of all objects read %d, want 4", d)
	}

	// A pushed refresh still checks the mount's own identity: a principal
	// without access gets nothing, though the versions are held.
	other := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	p := copyParams(pods[4])
	p[refresh.Attribute] = refresh.Request{Since: time.Now(), Changes: []refresh.Change{ch}}.Format()
	resp, err := e.republish(p, spCreds(other), mounted[4])
	wantCode(t, err, codes.PermissionDenied)
	if len(resp.GetFiles()) != 0 {
		t.Fatal("files served to a principal without access")
	}
}

// TestRefreshAttributeRefused: a malformed refresh attribute names itself.
func TestRefreshAttributeRefused(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "v")
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	grant(t, s, sp["appId"].(string))
	e := startProvider(t, s, cloudEnv, nil)
	p := e.baseParams("objectName: secret1\nobjectType: secret")
	p[refresh.Attribute] = `{"all":true}`
	_, err := e.mount(p, spCreds(sp))
	wantCode(t, err, codes.InvalidArgument, refresh.Attribute, "since is required")
}

func versionOf(secret map[string]any) string {
	id, _ := secret["id"].(string)
	for i := len(id) - 1; i >= 0; i-- {
		if id[i] == '/' {
			return id[i+1:]
		}
	}
	return ""
}

func copyParams(p params) params {
	out := params{}
	for k, v := range p {
		out[k] = v
	}
	return out
}
