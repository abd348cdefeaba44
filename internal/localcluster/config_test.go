package localcluster

import (
	"os"
	"regexp"
	"testing"
)

// TestDefaultKubeVersion: the default version is the one tools/cluster
// builds into bin/, and naming it picks bin/'s binaries, as naming none
// does (KVMOUNT_KUBE_VERSION=1.37 once asked for a bin/k8s-1.37 that no
// build makes).
func TestDefaultKubeVersion(t *testing.T) {
	mod, err := os.ReadFile("../../tools/cluster/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*k8s.io/kubernetes v(\d+\.\d+)\.\d+`).FindSubmatch(mod)
	if m == nil || string(m[1]) != DefaultKubeVersion {
		t.Fatalf("tools/cluster/go.mod pins k8s.io/kubernetes %q; DefaultKubeVersion is %s", m, DefaultKubeVersion)
	}
	for _, tc := range []struct{ version, want string }{
		{"", "/b"},
		{DefaultKubeVersion, "/b"},
		{"1.33", "/b/k8s-1.33"},
	} {
		c := Config{BinDir: "/b", KubeVersion: tc.version}
		if got := c.kubeBinDir(); got != tc.want {
			t.Errorf("KubeVersion %q: binaries in %s, want %s", tc.version, got, tc.want)
		}
	}
}
