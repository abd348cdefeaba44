package syncer_test

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	ssv1 "kvmount.dev/kvmount/internal/apis/secretsync/v1alpha1"
)

// TestUpstreamExamples: the SecretSyncs of upstream's documentation (the
// sync controller's README and end-to-end manifests, the Arc extension's
// docs) apply unchanged to the CRD, and the API server and the
// controller's Go rules (kvmount check's) agree on what they accept and
// refuse, case by case.
func TestUpstreamExamples(t *testing.T) {
	w := theWorld(t)
	ns := w.namespace("examples")
	tests := []struct {
		name, yaml string
		ok         bool
	}{
		{"sync controller README", `
spec:
  serviceAccountName: default
  secretProviderClassName: e2e-providerspc
  secretObject:
    type: Opaque
    data:
    - sourcePath: foo
      targetKey: bar`, true},
		{"Arc extension, version history", `
spec:
  serviceAccountName: workload-sa
  secretProviderClassName: secret-provider-class-name
  secretObject:
    type: Opaque
    data:
    - sourcePath: my-secret/0
      targetKey: my-secret-data-key0
    - sourcePath: my-secret/1
      targetKey: my-secret-data-key1`, true},
		{"TLS, labels, annotations, force", `
spec:
  serviceAccountName: default
  secretProviderClassName: tls-spc
  forceSynchronization: "2024-07-01"
  secretObject:
    type: kubernetes.io/tls
    labels: {app: web}
    annotations: {team: payments}
    data:
    - {sourcePath: cert, targetKey: tls.crt}
    - {sourcePath: cert, targetKey: tls.key}`, true},
		{"type defaulted", `
spec:
  serviceAccountName: default
  secretProviderClassName: spc
  secretObject:
    data: [{sourcePath: foo, targetKey: bar}]`, true},
		{"no data", `
spec:
  serviceAccountName: default
  secretProviderClassName: spc
  secretObject: {type: Opaque, data: []}`, false},
		{"reserved label", `
spec:
  serviceAccountName: default
  secretProviderClassName: spc
  secretObject:
    labels: {secrets-store.sync.x-k8s.io: "x"}
    data: [{sourcePath: foo, targetKey: bar}]`, false},
		{"label value too long", `
spec:
  serviceAccountName: default
  secretProviderClassName: spc
  secretObject:
    labels: {app: "` + strings.Repeat("x", 64) + `"}
    data: [{sourcePath: foo, targetKey: bar}]`, false},
		{"path with a directory", `
spec:
  serviceAccountName: default
  secretProviderClassName: spc
  secretObject:
    data: [{sourcePath: dir/file, targetKey: bar}]`, false},
		{"upper-case class", `
spec:
  serviceAccountName: default
  secretProviderClassName: My-SPC
  secretObject:
    data: [{sourcePath: foo, targetKey: bar}]`, false},
		{"no service account", `
spec:
  secretProviderClassName: spc
  secretObject:
    data: [{sourcePath: foo, targetKey: bar}]`, false},
		{"type with a space", `
spec:
  serviceAccountName: default
  secretProviderClassName: spc
  secretObject:
    type: "my type"
    data: [{sourcePath: foo, targetKey: bar}]`, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := map[string]any{}
			if err := yaml.Unmarshal([]byte("apiVersion: secret-sync.x-k8s.io/v1alpha1\nkind: SecretSync\nmetadata: {name: ex-"+string(rune('a'+i))+"}\n"+tt.yaml), &obj); err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{Object: obj}
			_, apiErr := w.dyn.Resource(ssv1.Resource).Namespace(ns).Create(context.Background(), u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			var ss ssv1.SecretSync
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj, &ss); err != nil {
				t.Fatal(err)
			}
			goErrs := ssv1.Validate(&ss)
			if (apiErr == nil) != tt.ok || (len(goErrs) == 0) != tt.ok {
				t.Errorf("API server: %v; Go rules: %v; want accepted = %v", apiErr, goErrs, tt.ok)
			}
		})
	}
}
