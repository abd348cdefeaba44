package events

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
)

// TestTruncate: a long message is cut to the limit, at a rune boundary,
// and says it was cut; a short one is left alone.
func TestTruncate(t *testing.T) {
	tests := []struct {
		msg  string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"abcdefghijk", 10, "abcdefg..."},
		{"abcdef€gh", 10, "abcdef..."}, // € is 3 bytes at 6..8: cut before it
		{strings.Repeat("é", 600), 1024, strings.Repeat("é", 510) + "..."},
	}
	for _, tt := range tests {
		got := truncate(tt.msg, tt.n)
		if got != tt.want || len(got) > tt.n || !utf8.ValidString(got) {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.msg, tt.n, got, tt.want)
		}
	}
}

// TestRepeatAfterExpiry: once the first Event of a repeating failure has
// expired (the API server deletes Events after an hour), the next repeat
// recreates it under its name with the count going on, and later repeats
// patch it again: one Event, one request per repeat after the first.
func TestRepeatAfterExpiry(t *testing.T) {
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{GVR: "EventList"})
	r := New(Config{Dynamic: dyn, Component: "c", Instance: "n"})
	pod := Pod{Name: "p", Namespace: "ns", UID: "u"}
	ctx := context.Background()
	r.Record(ctx, pod, Warning, "FailedMount", "boom")
	list, _ := dyn.Resource(GVR).Namespace("ns").List(ctx, metav1.ListOptions{})
	if len(list.Items) != 1 {
		t.Fatalf("%d Events, want 1", len(list.Items))
	}
	if err := dyn.Resource(GVR).Namespace("ns").Delete(ctx, list.Items[0].GetName(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	dyn.ClearActions()
	for range 5 {
		r.Record(ctx, pod, Warning, "FailedMount", "boom")
	}
	list, _ = dyn.Resource(GVR).Namespace("ns").List(ctx, metav1.ListOptions{})
	requests := len(dyn.Actions()) - 1 // the List above
	if len(list.Items) != 1 || requests != 6 {
		t.Fatalf("%d Events after 5 repeats, %d requests; want 1 Event and 6 requests (a failed patch, a create, 4 patches)", len(list.Items), requests)
	}
	if c, _, _ := unstructured.NestedInt64(list.Items[0].Object, "count"); c != 6 {
		t.Errorf("count %d, want 6 (the first, then 5 repeats)", c)
	}
}
