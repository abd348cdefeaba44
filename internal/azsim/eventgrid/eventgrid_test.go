package eventgrid

import (
	"testing"
	"time"
)

func TestFilter(t *testing.T) {
	for _, tc := range []struct {
		f            Filter
		typ, subject string
		want         bool
	}{
		{Filter{}, "Microsoft.KeyVault.SecretNewVersionCreated", "db", true},
		{Filter{IncludedEventTypes: []string{"microsoft.keyvault.secretnewversioncreated"}}, "Microsoft.KeyVault.SecretNewVersionCreated", "db", true},
		{Filter{IncludedEventTypes: []string{"Microsoft.KeyVault.KeyNewVersionCreated"}}, "Microsoft.KeyVault.SecretNewVersionCreated", "db", false},
		{Filter{SubjectBeginsWith: "APP-"}, "t", "app-db", true},
		{Filter{SubjectBeginsWith: "APP-", CaseSensitive: true}, "t", "app-db", false},
		{Filter{SubjectEndsWith: "-tls"}, "t", "web-tls", true},
		{Filter{SubjectBeginsWith: "web", SubjectEndsWith: "-tls"}, "t", "api-tls", false},
	} {
		if got := tc.f.matches(tc.typ, tc.subject); got != tc.want {
			t.Errorf("%+v matches(%s, %s) = %v, want %v", tc.f, tc.typ, tc.subject, got, tc.want)
		}
	}
}

func TestRetrySchedule(t *testing.T) {
	want := []time.Duration{10 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour, time.Hour, time.Hour}
	for i, w := range want {
		if got := retryAfter(i + 1); got != w {
			t.Errorf("retry after attempt %d: %v, want %v", i+1, got, w)
		}
	}
	for status, want := range map[int]bool{400: true, 401: true, 413: true, 403: false, 404: false, 408: false, 500: false, 503: false} {
		if dropped(status) != want {
			t.Errorf("dropped(%d) = %v, want %v", status, !want, want)
		}
	}
}

func TestPaths(t *testing.T) {
	for _, tc := range []struct {
		path, topic, sub, op string
		ok                   bool
	}{
		{"/topics/Keyvault:publish", "keyvault", "", "publish", true},
		{"/topics/keyvault/eventsubscriptions/KVM:receive", "keyvault", "kvm", "receive", true},
		{"/topics/keyvault/eventsubscriptions/kvm:renewLock", "keyvault", "kvm", "renewLock", true},
		{"/topics/keyvault/eventsubscriptions/kvm:publish", "", "", "", false},
		{"/topics/keyvault:receive", "", "", "", false},
		{"/topics/:publish", "", "", "", false},
		{"/other", "", "", "", false},
	} {
		topic, sub, op, ok := parsePath(tc.path)
		if ok != tc.ok || (ok && (topic != tc.topic || sub != tc.sub || op != tc.op)) {
			t.Errorf("parsePath(%s) = %s %s %s %v", tc.path, topic, sub, op, ok)
		}
	}
	if ns, topic, ok := parseTopicID("/subscriptions/s/resourceGroups/rg/providers/Microsoft.EventGrid/namespaces/NS/topics/T"); !ok || ns != "ns" || topic != "t" {
		t.Errorf("parseTopicID: %s %s %v", ns, topic, ok)
	}
	if !covers("/subscriptions/s/resourceGroups/rg/providers/Microsoft.EventGrid/namespaces/ns", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.EventGrid/namespaces/ns/topics/t") ||
		covers("/subscriptions/s/resourceGroups/rg/providers/Microsoft.EventGrid/namespaces/ns", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.EventGrid/namespaces/ns2/topics/t") {
		t.Error("covers is not segment by segment")
	}
}
