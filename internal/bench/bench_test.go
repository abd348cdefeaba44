package bench

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestFromClassBuildsTheDriversRequest(t *testing.T) {
	req, err := FromClass("testdata/spc-user-msi.yaml", "testdata/pod-user-msi.yaml", map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	var attrs map[string]string
	if err := json.Unmarshal([]byte(req.Attributes), &attrs); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"useVMManagedIdentity": "true", "keyvaultName": "kvmount-demo", "secretProviderClass": "azure-kvname-user-msi",
		"csi.storage.k8s.io/pod.name": "busybox-secrets-store-inline-user-msi", "csi.storage.k8s.io/pod.namespace": "default"}
	for k, v := range want {
		if attrs[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, attrs[k], v)
		}
	}
	if !strings.Contains(attrs["objects"], "objectName: key1") || req.Secrets != `{"k":"v"}` || req.Permission != "420" {
		t.Errorf("request %+v", req)
	}
}

func TestLoadRequest(t *testing.T) {
	req, err := LoadRequest("testdata/request.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var attrs map[string]string
	if err := json.Unmarshal([]byte(req.Attributes), &attrs); err != nil || attrs["keyvaultName"] != "kv1" || !strings.Contains(req.Secrets, "clientsecret") {
		t.Fatalf("request %+v, %v", req, err)
	}
}

func TestSummarize(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	r := summarize(lat, map[string]int{"InvalidArgument": 2}, time.Second)
	if r.P50 != 51*time.Millisecond || r.P99 != 100*time.Millisecond || r.Max != 100*time.Millisecond || r.Mounts != 100 {
		t.Errorf("summary %+v", r)
	}
	var b strings.Builder
	r.KVPerMount = 2.5
	r.Print(&b)
	for _, want := range []string{"100 in 1s (100.0 mounts/s)", "p50 51ms", "errors:      2 [InvalidArgument=2]", "2.50 requests per mount"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
}
