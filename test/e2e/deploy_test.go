package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"kvmount.dev/kvmount/internal/localcluster"
	"kvmount.dev/kvmount/internal/localenv"
)

const chartDir = "../../deploy/helm/kvmount"

// TestDeployManifestsValidate checks every manifest in deploy/ with a
// strict server-side dry run against the API server under test (schema,
// defaulting, admission): deploy/*.yaml on every version, and
// kubernetes-1.35+/csidriver.yaml from 1.35, where its
// serviceAccountTokenInSecrets exists; before 1.35 the API server must
// refuse it, which is why it is a file of its own.
func TestDeployManifestsValidate(t *testing.T) {
	env, _ := startFakeEnv(t, 1, nil)
	files, err := filepath.Glob("../../deploy/*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("deploy manifests: %v %v", files, err)
	}
	for _, f := range files {
		if err := env.Cluster.ApplyDryRun(context.Background(), mustRead(t, f)); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
	}
	newer := mustRead(t, "../../deploy/kubernetes-1.35+/csidriver.yaml")
	err = env.Cluster.ApplyDryRun(context.Background(), newer)
	switch minor := serverMinor(t, env); {
	case minor >= 35 && err != nil:
		t.Errorf("kubernetes-1.35+/csidriver.yaml on 1.%d: %v", minor, err)
	case minor < 35 && (err == nil || !strings.Contains(err.Error(), "serviceAccountTokenInSecrets")):
		t.Errorf("kubernetes-1.35+/csidriver.yaml on 1.%d must be refused for serviceAccountTokenInSecrets, got %v", minor, err)
	}
}

// serverMinor is the minor version of the cluster under test.
func serverMinor(t *testing.T, env *localenv.Env) int {
	t.Helper()
	cs, err := env.Cluster.Client()
	if err != nil {
		t.Fatal(err)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	minor, err := strconv.Atoi(strings.TrimRight(v.Minor, "+"))
	if err != nil {
		t.Fatalf("server version %+v: %v", v, err)
	}
	return minor
}

// TestHelmChart lints the chart and validates what it renders with the
// value sets operators use, on the Kubernetes versions it supports, with a
// server-side dry run: serviceAccountTokenInSecrets only from 1.35, every
// value upstream's charts have carried into the objects, Windows refused
// with the reason. Its CRDs must be deploy/crds's.
func TestHelmChart(t *testing.T) {
	helm := filepath.Join(binDir(t), "helm")
	if out, err := exec.Command(helm, "lint", chartDir).CombinedOutput(); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
	for _, f := range []string{"secrets-store.csi.x-k8s.io.yaml", "secret-sync.x-k8s.io.yaml"} {
		a, _ := os.ReadFile(filepath.Join("../../deploy/crds", f))
		b, _ := os.ReadFile(filepath.Join(chartDir, "files", f))
		if len(a) == 0 || string(a) != string(b) {
			t.Errorf("the chart's %s differs from deploy/crds: run make crds", f)
		}
	}
	env, _ := startFakeEnv(t, 1, nil)
	cluster := fmt.Sprintf("1.%d.0", serverMinor(t, env))
	render := func(kube string, sets ...string) (string, error) {
		args := []string{"template", "kvmount", chartDir, "--namespace", "kube-system", "--kube-version", kube}
		for _, s := range sets {
			args = append(args, "--set", s)
		}
		out, err := exec.Command(helm, args...).CombinedOutput()
		return string(out), err
	}
	for _, tt := range []struct {
		name string
		kube string
		sets []string
		want []string // in the rendered objects
		not  []string
	}{
		{"defaults on 1.37", "1.37.2", nil,
			[]string{"serviceAccountTokenInSecrets: true", "audience: api://AKSIdentityBinding", "requiresRepublish: false", "--enable-secret-rotation=false",
				"app.kubernetes.io/name: kvmount", "helm.sh/resource-policy: keep", "virtual-kubelet", "aggregate-to-edit", "image: ghcr.io/kvmount/provider-azure:v0.1.0"},
			[]string{"secretprovidersyncing-role", "secret-sync.x-k8s.io", "kind: Deployment"}},
		{"defaults on 1.32", "1.32.0", nil, []string{"tokenRequests:"}, []string{"serviceAccountTokenInSecrets"}},
		{"rotation, sync, logs", "1.37.2", []string{"enableSecretRotation=true", "rotationPollInterval=30s", "syncSecret.enabled=true", "logVerbosity=5", "logFormatJSON=true"},
			[]string{"requiresRepublish: true", "--rotation-poll-interval=30s", "secretprovidersyncing-role", "- -v=5", "- --log-format-json=true"}, nil},
		{"images by digest, pull secrets", "1.37.2", []string{"linux.image.digest=sha256:" + strings.Repeat("a", 64), "provider.image.repository=mirror.example/kvmount/provider", "provider.image.tag=v9", "imagePullSecrets[0].name=regcred"},
			[]string{"secrets-store-csi-driver@sha256:aaaa", "image: mirror.example/kvmount/provider:v9", "name: regcred"}, nil},
		{"only the driver, no RBAC, no CRDs", "1.37.2", []string{"provider.enabled=false", "rbac.install=false", "crds.install=false"},
			[]string{"name: kvmount-secrets-store-csi-driver", "app: secrets-store-csi-driver"}, []string{"provider-azure", "kind: ClusterRole", "kind: CustomResourceDefinition"}},
		{"sync controller", "1.37.2", []string{"syncController.enabled=true", "syncController.rotationPollInterval=1h", "syncController.secretSyncControllerName=team-a"},
			[]string{"name: secretsyncs.secret-sync.x-k8s.io", "kind: Deployment", "name: secrets-store-sync-controller-manager", "- --leader-elect",
				"--rotation-poll-interval=1h", "--cache-ttl=1h", "--secret-sync-controller-name=team-a", "kind: ValidatingAdmissionPolicyBinding",
				"policyName: kvmount-secrets-sync-no-delete", "seccompProfile: {type: RuntimeDefault}", "--no-events"}, nil},
		{"sync controller without drift repair or policies", "1.37.2", []string{"syncController.enabled=true", "syncController.repairDrift=false",
			"syncController.validatingAdmissionPolicies.enabled=false"},
			[]string{`verbs: ["create", "patch", "delete"]`, "--repair-drift=false"}, []string{"ValidatingAdmissionPolicy"}},
		{"Key Vault's events, both routes", "1.37.2", []string{"syncController.enabled=true", "syncController.events.pull.enabled=true",
			"syncController.events.pull.endpoint=https://ns.westus2-1.eventgrid.azure.net", "syncController.events.pull.topic=keyvault",
			"syncController.events.pull.subscription=kvmount", "syncController.events.pull.clientId=00000000-0000-0000-0000-000000000001",
			"syncController.events.pull.tenantId=00000000-0000-0000-0000-000000000002", "syncController.events.webhook.enabled=true",
			"syncController.events.webhook.tlsSecretName=events-tls", "syncController.events.webhook.tenantId=00000000-0000-0000-0000-000000000002",
			"syncController.events.webhook.audiences[0]=api://kvmount-events", "syncController.events.webhook.service.type=NodePort"},
			[]string{"--events-namespace-endpoint=https://ns.westus2-1.eventgrid.azure.net", "--events-client-id=00000000-0000-0000-0000-000000000001",
				"audience: api://AzureADTokenExchange, expirationSeconds: 3600", "--events-webhook-bind-address=:8443",
				"--events-webhook-audience=api://kvmount-events", "secretName: events-tls", "name: secrets-store-sync-controller-events",
				"type: NodePort", `verbs: ["get", "list", "watch", "patch"]`, "policyName: kvmount-secrets-sync-classes"}, nil},
		{"placement", "1.37.2", []string{"linux.nodeSelector.pool=system", "linux.priorityClassName=", "provider.podAnnotations.prometheus\\.io/scrape=enabled", "linux.extraArgs[0]=--kube-api-qps=50"},
			[]string{"pool: system", "prometheus.io/scrape", "--kube-api-qps=50"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := render(tt.kube, tt.sets...)
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("rendered chart lacks %q", w)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(out, n) {
					t.Errorf("rendered chart has %q", n)
				}
			}
			// What the chart renders for the cluster under test must
			// apply on it.
			onCluster, err := render(cluster, tt.sets...)
			if err != nil {
				t.Fatalf("helm template --kube-version %s: %v\n%s", cluster, err, onCluster)
			}
			if err := env.Cluster.ApplyDryRun(context.Background(), []byte(onCluster)); err != nil {
				t.Errorf("server-side dry run on %s: %v", cluster, err)
			}
		})
	}
	for _, bad := range []struct {
		sets []string
		want string
	}{
		{[]string{"syncController.enabled=true", "syncController.events.webhook.enabled=true"}, "tlsSecretName is required"},
		{[]string{"syncController.enabled=true", "syncController.events.webhook.enabled=true", "syncController.events.webhook.tlsSecretName=t"}, "needs authentication"},
		{[]string{"syncController.enabled=true", "syncController.events.pull.enabled=true", "syncController.events.pull.endpoint=https://x"}, "pull needs endpoint, topic"},
	} {
		if out, err := render("1.37.2", bad.sets...); err == nil || !strings.Contains(out, bad.want) {
			t.Errorf("%v: %v %s; want a refusal saying %q", bad.sets, err, out, bad.want)
		}
	}
	if out, err := render("1.37.2", "windows.enabled=true"); err == nil || !strings.Contains(out, "kvmount builds no Windows images yet") {
		t.Errorf("windows.enabled=true: %v %s", err, out)
	}
	if out, err := render("1.31.9"); err == nil || !strings.Contains(out, "kubeVersion") {
		t.Errorf("Kubernetes 1.31 is below the tested range and must be refused: %v %s", err, out)
	}
}

// TestHelmLifecycle installs, upgrades, uninstalls and installs again the
// chart for real, as an operator would, in the local cluster whose nodes
// run it in containers: an upgrade that rolls both DaemonSets keeps a
// mounted pod's files and rotation working; uninstall removes the
// DaemonSets and RBAC but keeps the CRDs and so every SecretProviderClass;
// an existing CSIDriver that Helm does not own (left by upstream's
// manifests) makes install fail with Helm's ownership error until it is
// adopted as docs/migration.md says.
func TestHelmLifecycle(t *testing.T) {
	env, cs := startEnv(t, 1)
	ctx := context.Background()
	setupSeedVault(t, env, "before-upgrade")
	if err := env.Cluster.Apply(ctx, manifest(t, "pod-user-msi.yaml", nil)); err != nil {
		t.Fatal(err)
	}
	const pod = "busybox-secrets-store-inline-user-msi"
	waitSecretFile(t, env, cs, pod, "before-upgrade")

	helm := func(args ...string) string {
		t.Helper()
		out, err := env.Helm(ctx, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	values := filepath.Join(filepath.Dir(env.Cluster.Dir()), "values.yaml")
	before := env.Nodes[0].DriverPod
	helm("upgrade", localenv.ReleaseName, env.ChartDir(), "-n", localenv.ReleaseNamespace, "--values", values,
		"--set", "logVerbosity=2", "--set", "linux.podAnnotations.upgraded=yes", "--set", "provider.podAnnotations.upgraded=yes", "--wait", "--timeout", "3m")
	waitFor(t, 2*time.Minute, "the upgraded driver pod", func() (bool, string) {
		pods, err := cs.CoreV1().Pods(localenv.ReleaseNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + localenv.DriverApp})
		if err != nil || len(pods.Items) != 1 {
			return false, "pods: " + errText(err)
		}
		p := pods.Items[0]
		return p.Name != before && p.Annotations["upgraded"] == "yes" && p.Status.Phase == "Running", p.Name
	})
	waitContainerFile(t, env, pod, "/mnt/secrets-store/secret1", "before-upgrade")
	azsim(t, env, "keyvault secret set", map[string]any{"vaultName": "kvmount-e2e", "name": "secret1", "value": "after-upgrade"})
	waitContainerFile(t, env, pod, "/mnt/secrets-store/secret1", "after-upgrade")

	helm("uninstall", localenv.ReleaseName, "-n", localenv.ReleaseNamespace, "--wait")
	if _, err := cs.AppsV1().DaemonSets(localenv.ReleaseNamespace).Get(ctx, "kvmount-secrets-store-csi-driver", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the driver's DaemonSet survived uninstall: %v", err)
	}
	dyn := dynamic.NewForConfigOrDie(restConfig(t, env))
	spc := schema.GroupVersionResource{Group: "secrets-store.csi.x-k8s.io", Version: "v1", Resource: "secretproviderclasses"}
	if _, err := dyn.Resource(spc).Namespace("default").Get(ctx, "azure-kvname-user-msi", metav1.GetOptions{}); err != nil {
		t.Errorf("uninstall took the SecretProviderClasses with it (the CRDs must be kept): %v", err)
	}

	// A CSIDriver left by plain manifests: Helm refuses to take it over.
	csidriver := "../../deploy/kubernetes-1.35+/csidriver.yaml"
	if serverMinor(t, env) < 35 {
		csidriver = "../../deploy/csidriver.yaml"
	}
	if err := env.Cluster.Apply(ctx, mustRead(t, csidriver)); err != nil {
		t.Fatal(err)
	}
	out, err := env.Helm(ctx, "install", localenv.ReleaseName, env.ChartDir(), "-n", localenv.ReleaseNamespace, "--values", values).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "invalid ownership metadata") {
		t.Fatalf("install over an unowned CSIDriver: %v %s", err, out)
	}
	// Adopted as docs/migration.md says, it installs.
	for _, kv := range [][]string{
		{"label", "csidriver", "secrets-store.csi.k8s.io", "app.kubernetes.io/managed-by=Helm", "--overwrite"},
		{"annotate", "csidriver", "secrets-store.csi.k8s.io", "meta.helm.sh/release-name=" + localenv.ReleaseName, "meta.helm.sh/release-namespace=" + localenv.ReleaseNamespace, "--overwrite"},
	} {
		if out, err := env.Cluster.Kubectl(ctx, kv...).CombinedOutput(); err != nil {
			t.Fatalf("kubectl %v: %v %s", kv, err, out)
		}
	}
	helm("install", localenv.ReleaseName, env.ChartDir(), "-n", localenv.ReleaseNamespace, "--values", values, "--wait", "--timeout", "3m")
	azsim(t, env, "keyvault secret set", map[string]any{"vaultName": "kvmount-e2e", "name": "secret1", "value": "after-reinstall"})
	waitContainerFile(t, env, pod, "/mnt/secrets-store/secret1", "after-reinstall")
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func binDir(t *testing.T) string {
	t.Helper()
	d, err := localcluster.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
