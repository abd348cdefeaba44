package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"kvmount.dev/kvmount/internal/localcluster"
)

// TestDeployManifestsValidate checks every manifest in deploy/ with a
// server-side dry run against the real API server (schema, defaulting,
// admission), after the CRDs and the CSIDriver are applied.
func TestDeployManifestsValidate(t *testing.T) {
	env, _ := startEnv(t, 1)
	files, err := filepath.Glob("../../deploy/*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("deploy manifests: %v %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Cluster.ApplyDryRun(context.Background(), b); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
	}
}

// TestHelmChart lints the chart and validates what it renders (with and
// without Secret sync, with and without the provider) with a server-side
// dry run; its CRDs must be deploy/crds's.
func TestHelmChart(t *testing.T) {
	helm := filepath.Join(binDir(t), "helm")
	if _, err := os.Stat(helm); err != nil {
		t.Fatalf("helm missing: run make tools (%v)", err)
	}
	chart := "../../deploy/helm/kvmount"
	if out, err := exec.Command(helm, "lint", chart).CombinedOutput(); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
	for _, name := range []string{"aadpodidentity.k8s.io.yaml", "secrets-store.csi.x-k8s.io.yaml"} {
		a, _ := os.ReadFile(filepath.Join("../../deploy/crds", name))
		b, _ := os.ReadFile(filepath.Join(chart, "crds", name))
		if len(a) == 0 || string(a) != string(b) {
			t.Errorf("the chart's crds/%s differs from deploy/crds: run make crds", name)
		}
	}
	env, _ := startEnv(t, 1)
	for _, set := range []string{"syncSecret.enabled=true", "syncSecret.enabled=false,provider.enabled=false"} {
		out, err := exec.Command(helm, "template", "kvmount", chart, "--namespace", "kube-system", "--kube-version", "1.37.2", "--set", set).Output()
		if err != nil {
			t.Fatalf("helm template --set %s: %v", set, err)
		}
		if err := env.Cluster.ApplyDryRun(context.Background(), out); err != nil {
			t.Errorf("rendered chart (--set %s): %v", set, err)
		}
	}
}

func binDir(t *testing.T) string {
	t.Helper()
	d, err := localcluster.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
