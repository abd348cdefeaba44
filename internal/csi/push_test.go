package csi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	v1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	"kvmount.dev/kvmount/internal/refresh"
)

// pushDriver is a test driver whose classes come from a watch, as in a
// cluster, so that annotating the class reaches it.
func pushDriver(t *testing.T, rotation bool) *testDriver {
	t.Helper()
	var classes *Classes
	td := newTestDriver(t, func(c *Config) {
		classes = NewClasses(c.Dynamic)
		c.Classes, c.Rotation = classes, rotation
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	classes.Start(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), classes.Synced) {
		t.Fatal("the class cache never synced")
	}
	return td
}

// annotate merges annotations into class spc.
func (td *testDriver) annotate(ann map[string]string) {
	td.t.Helper()
	b := fmt.Appendf(nil, `{"metadata":{"annotations":%s}}`, jsonMap(ann))
	if _, err := td.dyn.Resource(v1.SecretProviderClassResource).Namespace("default").Patch(context.Background(), "spc", types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
		td.t.Fatal(err)
	}
}

func jsonMap(m map[string]string) string {
	s := "{"
	for k, v := range m {
		if len(s) > 1 {
			s += ","
		}
		s += fmt.Sprintf("%q:%q", k, v)
	}
	return s + "}"
}

// refreshes are the provider requests that carried a pushed refresh.
func (td *testDriver) refreshes() []refresh.Request {
	td.prov.mu.Lock()
	defer td.prov.mu.Unlock()
	var out []refresh.Request
	for _, r := range td.prov.requests {
		if v, ok := attrsOf(r)[refresh.Attribute]; ok {
			got, err := refresh.ParseRequest(v)
			if err != nil {
				td.t.Fatalf("the driver sent a malformed refresh: %v", err)
			}
			out = append(out, got)
		}
	}
	return out
}

// eventually waits, at most 10 s, for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// servesPushed answers "v1" to kubelet's publishes and value to pushed
// refreshes.
func servesPushed(value string) func(*v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	return func(r *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
		if _, ok := attrsOf(r)[refresh.Attribute]; ok {
			return serves(value)(r)
		}
		return serves("v1")(r)
	}
}

// TestPushedRefresh: a change recorded on the class refreshes at once
// every volume of the class the node mounts — not a volume unpublished
// since — with the pod's last mount request and the change for the
// provider; a failed pushed refresh keeps the files and tells the pod; a
// change already seen is not pushed again.
func TestPushedRefresh(t *testing.T) {
	td := pushDriver(t, true)
	td.prov.set(servesPushed("v2"))
	a := td.req("vol-a", map[string]string{"csi.storage.k8s.io/pod.name": "pa", "csi.storage.k8s.io/serviceAccount.tokens": `{"api://AzureADTokenExchange":{"token":"tok-a"}}`})
	b := td.req("vol-b", map[string]string{"csi.storage.k8s.io/pod.name": "pb"})
	gone := td.req("vol-gone", map[string]string{"csi.storage.k8s.io/pod.name": "pc"})
	for _, r := range []*csipb.NodePublishVolumeRequest{a, b, gone} {
		if err := td.publish(r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := td.node.NodeUnpublishVolume(context.Background(), &csipb.NodeUnpublishVolumeRequest{VolumeId: gone.VolumeId, TargetPath: gone.TargetPath}); err != nil {
		t.Fatal(err)
	}
	ch := refresh.Change{ID: "e1", Time: td.now.Add(-time.Second), Vault: "class-vault", Kind: refresh.KindSecret, Name: "s", Version: "v2"}
	td.annotate(map[string]string{refresh.ChangedAnnotation: refresh.FormatChanges([]refresh.Change{ch})})
	eventually(t, "both volumes hold v2", func() bool { return td.read(a, "s") == "v2" && td.read(b, "s") == "v2" })
	pushed := td.refreshes()
	if len(pushed) != 2 {
		t.Fatalf("%d pushed refreshes, want 2 (one per published volume)", len(pushed))
	}
	for _, p := range pushed {
		if p.All || len(p.Changes) != 1 || p.Changes[0].ID != "e1" || p.Since.IsZero() {
			t.Fatalf("pushed refresh %+v: want change e1 only, with a since", p)
		}
	}
	var last *v1alpha1.MountRequest
	td.prov.mu.Lock()
	for _, r := range td.prov.requests {
		if attrs := attrsOf(r); attrs["csi.storage.k8s.io/pod.name"] == "pa" && attrs[refresh.Attribute] != "" {
			last = r
		}
	}
	td.prov.mu.Unlock()
	if last == nil || attrsOf(last)["csi.storage.k8s.io/serviceAccount.tokens"] == "" || len(last.GetCurrentObjectVersion()) == 0 {
		t.Fatal("the pushed refresh of pod pa did not repeat its tokens and versions")
	}
	eventually(t, "both pods told their content changed", func() bool { return td.eventCount("SecretRotationComplete") == 2 })

	// The same list again with one more change: only the new one is
	// pushed. A provider failure keeps the files.
	td.prov.set(fails(errors.New("vault unreachable")))
	ch2 := ch
	ch2.ID, ch2.Version = "e2", "v3"
	td.annotate(map[string]string{refresh.ChangedAnnotation: refresh.FormatChanges([]refresh.Change{ch, ch2})})
	eventually(t, "the pods are told the refresh failed", func() bool { return td.eventCount("SecretRotationFailed") == 2 })
	if td.read(a, "s") != "v2" || td.read(b, "s") != "v2" {
		t.Fatal("a failed pushed refresh changed the files")
	}
	pushed = td.refreshes()
	if p := pushed[len(pushed)-1]; len(p.Changes) != 1 || p.Changes[0].ID != "e2" {
		t.Fatalf("second push carried %+v; want only the new change e2", p.Changes)
	}
}

// TestRefreshRequest: a refresh asked for on the class reads every object
// afresh, also with rotation off (the user asked); a change Key Vault
// announced does nothing with rotation off (files never change after the
// mount, as upstream's --enable-secret-rotation=false).
func TestRefreshRequest(t *testing.T) {
	td := pushDriver(t, false)
	td.prov.set(servesPushed("v2"))
	a := td.req("vol-a", nil)
	if err := td.publish(a); err != nil {
		t.Fatal(err)
	}
	td.annotate(map[string]string{refresh.ChangedAnnotation: refresh.FormatChanges([]refresh.Change{{ID: "e1", Vault: "class-vault", Kind: refresh.KindSecret, Name: "s"}})})
	td.annotate(map[string]string{refresh.RequestAnnotation: "2026-12-07T10:00:00Z"})
	eventually(t, "the volume holds v2", func() bool { return td.read(a, "s") == "v2" })
	pushed := td.refreshes()
	if len(pushed) != 1 || !pushed[0].All {
		t.Fatalf("pushed %+v; want one refresh of all objects (the change must not be pushed with rotation off)", pushed)
	}
	// The same value again is no new request.
	td.annotate(map[string]string{"unrelated": "x"})
	td.annotate(map[string]string{refresh.RequestAnnotation: "2026-12-07T10:00:01Z"})
	eventually(t, "the second request", func() bool { return len(td.refreshes()) == 2 })
}

// TestClassCannotSetRefresh: a class parameter named like the refresh
// attribute never reaches the provider.
func TestClassCannotSetRefresh(t *testing.T) {
	td := newTestDriver(t, nil)
	spc, _ := td.dyn.Resource(v1.SecretProviderClassResource).Namespace("default").Get(context.Background(), "spc", metav1.GetOptions{})
	if err := unstructured.SetNestedField(spc.Object, `{"since":"2026-01-01T00:00:00Z","all":true}`, "spec", "parameters", refresh.Attribute); err != nil {
		t.Fatal(err)
	}
	if _, err := td.dyn.Resource(v1.SecretProviderClassResource).Namespace("default").Update(context.Background(), spc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := td.publish(td.req("vol", nil)); err != nil {
		t.Fatal(err)
	}
	if _, ok := attrsOf(td.prov.last())[refresh.Attribute]; ok {
		t.Fatal("the class's refresh parameter reached the provider")
	}
}

// attrsOf decodes a request's attributes.
func attrsOf(r *v1alpha1.MountRequest) map[string]string {
	attrs := map[string]string{}
	_ = json.Unmarshal([]byte(r.GetAttributes()), &attrs)
	return attrs
}

// eventCount sums the counts of the Events of reason (two pods' Events of
// one reason may be one Event or two, as they race).
func (td *testDriver) eventCount(reason string) int {
	n := 0
	for _, e := range td.events() {
		r, count, _ := strings.Cut(e, "×")
		if r == reason {
			c, _ := strconv.Atoi(count)
			n += c
		}
	}
	return n
}
