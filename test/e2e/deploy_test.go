package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
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
