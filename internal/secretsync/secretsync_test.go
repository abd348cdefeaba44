package secretsync

import (
	"context"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	v1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
)

var certPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not parsed here")}))

func fakeClient() *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{secretsGVR: "SecretList"})
}

func get(t *testing.T, c *dynamicfake.FakeDynamicClient, name string) *corev1.Secret {
	t.Helper()
	s, err := typedSecrets{c.Resource(secretsGVR).Namespace("ns")}.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func writes(c *dynamicfake.FakeDynamicClient) int {
	n := 0
	for _, a := range c.Actions() {
		if a.GetVerb() == "create" || a.GetVerb() == "update" {
			n++
		}
	}
	return n
}

// TestSyncMergesOwnersAndWritesOnlyOnChange: the first pod creates the
// Secret; a second pod adds itself as owner without dropping the first; a
// republish with the same content writes nothing; a rotation updates the
// data and keeps both owners.
func TestSyncMergesOwnersAndWritesOnlyOnChange(t *testing.T) {
	c := fakeClient()
	ctx := context.Background()
	objs := []*v1.SecretObject{{SecretName: "synced", Type: "Opaque", Labels: map[string]string{"team": "a"},
		Data: []*v1.SecretObjectData{{ObjectName: "secret1", Key: "password"}}}}
	pod1, pod2 := Owner{Namespace: "ns", Name: "p1", UID: "u1"}, Owner{Namespace: "ns", Name: "p2", UID: "u2"}
	steps := []struct {
		name       string
		owner      Owner
		value      string
		wantWrites int
		wantOwners int
	}{
		{"first pod creates", pod1, "v1", 1, 1},
		{"second pod adds itself", pod2, "v1", 2, 2},
		{"unchanged republish", pod1, "v1", 2, 2},
		{"rotation", pod2, "v2", 3, 2},
	}
	for _, s := range steps {
		if _, err := Sync(ctx, c, s.owner, objs, map[string][]byte{"secret1": []byte(s.value)}); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got := get(t, c, "synced")
		if writes(c) != s.wantWrites || len(got.OwnerReferences) != s.wantOwners || string(got.Data["password"]) != s.value {
			t.Errorf("%s: %d writes, %d owners, data %q; want %d, %d, %q", s.name, writes(c), len(got.OwnerReferences), got.Data["password"], s.wantWrites, s.wantOwners, s.value)
		}
		if got.Labels[ManagedLabel] != "true" || got.Labels["team"] != "a" {
			t.Errorf("%s: labels %v", s.name, got.Labels)
		}
	}
}

func TestBuildRefuses(t *testing.T) {
	files := map[string][]byte{"cert": []byte(certPEM), "plain": []byte("x")}
	tests := []struct {
		name string
		so   v1.SecretObject
		want string
	}{
		{"bad name", v1.SecretObject{SecretName: "Not_Valid", Data: []*v1.SecretObjectData{{ObjectName: "plain", Key: "k"}}}, "not a valid Secret name"},
		{"no data", v1.SecretObject{SecretName: "s"}, "data is empty"},
		{"unknown file", v1.SecretObject{SecretName: "s", Data: []*v1.SecretObjectData{{ObjectName: "nope", Key: "k"}}}, `objectName "nope" is not a mounted file`},
		{"tls key missing", v1.SecretObject{SecretName: "s", Type: "kubernetes.io/tls", Data: []*v1.SecretObjectData{{ObjectName: "cert", Key: "tls.key"}}}, "no private key found"},
		{"tls from plain text", v1.SecretObject{SecretName: "s", Type: "kubernetes.io/tls", Data: []*v1.SecretObjectData{{ObjectName: "plain", Key: "tls.crt"}}}, "neither PEM nor a PKCS#12"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(0, &tt.so, Owner{Namespace: "ns"}, files)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
}

// TestSyncNeverTakesOver: a Secret of the class's secretName that the
// driver did not create (no managed label) is refused and left exactly as
// it was: not overwritten, not labelled, not made pod-owned.
func TestSyncNeverTakesOver(t *testing.T) {
	c := fakeClient()
	ctx := context.Background()
	theirs := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db-password", Namespace: "ns", Labels: map[string]string{"owner": "dba"}},
		Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"password": []byte("the-dbas-own")}}
	if _, err := (typedSecrets{c.Resource(secretsGVR).Namespace("ns")}).Create(ctx, theirs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := writes(c)
	objs := []*v1.SecretObject{{SecretName: "db-password", Type: "Opaque", Data: []*v1.SecretObjectData{{ObjectName: "secret1", Key: "password"}}}}
	_, err := Sync(ctx, c, Owner{Namespace: "ns", Name: "attacker", UID: "u"}, objs, map[string][]byte{"secret1": []byte("overwritten")})
	var nm *NotManagedError
	if !errors.As(err, &nm) || !strings.Contains(err.Error(), "choose another secretName") {
		t.Fatalf("got %v, want a NotManagedError that says what to do", err)
	}
	got := get(t, c, "db-password")
	if writes(c) != before || string(got.Data["password"]) != "the-dbas-own" || len(got.OwnerReferences) != 0 || got.Labels[ManagedLabel] != "" {
		t.Errorf("the Secret was touched: writes %d→%d, data %q, owners %v, labels %v", before, writes(c), got.Data["password"], got.OwnerReferences, got.Labels)
	}
}

// TestSyncBelongsToOneClass: a managed Secret belongs to the class that
// created it; another class of the namespace naming it is refused and
// changes nothing, while the owner class keeps writing it. A managed
// Secret synced before the annotation existed is claimed by the first
// class that syncs it.
func TestSyncBelongsToOneClass(t *testing.T) {
	c := fakeClient()
	ctx := context.Background()
	objs := []*v1.SecretObject{{SecretName: "shared", Type: "Opaque", Data: []*v1.SecretObjectData{{ObjectName: "secret1", Key: "k"}}}}
	a := Owner{Namespace: "ns", Name: "pa", UID: "ua", Class: "team-a"}
	b := Owner{Namespace: "ns", Name: "pb", UID: "ub", Class: "team-b"}
	if _, err := Sync(ctx, c, a, objs, map[string][]byte{"secret1": []byte("a's")}); err != nil {
		t.Fatal(err)
	}
	before := writes(c)
	_, err := Sync(ctx, c, b, objs, map[string][]byte{"secret1": []byte("b's")})
	var oe *OwnedByOtherClassError
	if !errors.As(err, &oe) || !strings.Contains(err.Error(), "synced by SecretProviderClass team-a") || !strings.Contains(err.Error(), "class team-b") {
		t.Fatalf("got %v, want a refusal naming the owner class", err)
	}
	got := get(t, c, "shared")
	if writes(c) != before || string(got.Data["k"]) != "a's" || len(got.OwnerReferences) != 1 {
		t.Errorf("the other class changed the Secret: writes %d→%d, data %q, owners %v", before, writes(c), got.Data["k"], got.OwnerReferences)
	}
	if _, err := Sync(ctx, c, a, objs, map[string][]byte{"secret1": []byte("a's v2")}); err != nil || string(get(t, c, "shared").Data["k"]) != "a's v2" {
		t.Errorf("the owner class could not write its Secret: %v", err)
	}

	legacy := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "legacy", Namespace: "ns", Labels: map[string]string{ManagedLabel: "true"}},
		Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"k": []byte("old")}}
	if _, err := (typedSecrets{c.Resource(secretsGVR).Namespace("ns")}).Create(ctx, legacy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	objs[0].SecretName = "legacy"
	if _, err := Sync(ctx, c, b, objs, map[string][]byte{"secret1": []byte("b's")}); err != nil {
		t.Fatal(err)
	}
	if got := get(t, c, "legacy"); got.Annotations[ClassAnnotation] != "team-b" {
		t.Errorf("a legacy managed Secret was not claimed: annotations %v", got.Annotations)
	}
	if _, err := Sync(ctx, c, a, objs, map[string][]byte{"secret1": []byte("a's")}); !errors.As(err, &oe) {
		t.Errorf("after the claim, another class got %v, want a refusal", err)
	}
}
