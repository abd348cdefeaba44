// Package e2e runs kvmount's whole chain on a real local node: kubelet
// mounts pods' secrets-store volumes through our CSI driver and Azure
// provider, against azsim. Tests need root (tmpfs, kubelet) and the
// binaries `make build cluster-bins` puts in bin/.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"kvmount.dev/kvmount/internal/localcluster"
	"kvmount.dev/kvmount/internal/localenv"
)

// startEnv starts the environment with a fast rotation pace: the product
// installed by its chart, in real containers.
func startEnv(t testing.TB, nodes int) (*localenv.Env, kubernetes.Interface) {
	t.Helper()
	return startEnvWith(t, nodes, nil)
}

// startFakeEnv starts the environment with host-process drivers and
// providers next to fake-CRI kubelets: for tests that start the binaries
// themselves or measure the processes (memory, CPU, 110-pod storms).
func startFakeEnv(t testing.TB, nodes int, tune func(*localenv.Config)) (*localenv.Env, kubernetes.Interface) {
	t.Helper()
	return startEnvWith(t, nodes, func(c *localenv.Config) {
		c.Runtime = localcluster.RuntimeFake
		if tune != nil {
			tune(c)
		}
	})
}

// startEnvWith is startEnv with the configuration tuned.
func startEnvWith(t testing.TB, nodes int, tune func(*localenv.Config)) (*localenv.Env, kubernetes.Interface) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("runs kubelets and mounts tmpfs: run as root (make test)")
	}
	bin, err := localcluster.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"azsim", "provider-azure", "secrets-store-csi-driver"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("%s missing in %s: run make build", b, bin)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// A short dir: kubelet's and the driver's sockets live under it, and
	// unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "kve")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	keepLogsOnFailure(t, dir)
	began := time.Now()
	cfg := localenv.Config{Dir: dir, BinDir: bin, Nodes: nodes, OnlyUsedImages: true,
		SyncFrequency: 2 * time.Second, RotationPollInterval: 2 * time.Second,
		Logf: func(format string, args ...any) {
			t.Helper()
			t.Logf("[%4.1fs] "+format, append([]any{time.Since(began).Seconds()}, args...)...)
		}}
	if tune != nil {
		tune(&cfg)
	}
	env, err := localenv.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	cs, err := env.Cluster.Client()
	if err != nil {
		t.Fatal(err)
	}
	return env, cs
}

// logTail is how many of each log's last lines a failed test prints.
const logTail = 40

// keepLogsOnFailure prints the end of every component's log under dir
// when the test has failed, before dir is removed: CI keeps only the test
// output, and a hang without logs cannot be diagnosed. Register it after
// the removal of dir (cleanups run last first).
func keepLogsOnFailure(t testing.TB, dir string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		var files []string
		for _, pattern := range []string{"logs/*.log", "*/logs/*.log", "*/n/*/pod-logs/" + localenv.ReleaseNamespace + "_*/*/*.log"} {
			m, _ := filepath.Glob(filepath.Join(dir, pattern))
			files = append(files, m...)
		}
		for _, f := range files {
			if filepath.Base(f) == "audit.log" {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
			t.Logf("last %d lines of %s:\n%s", min(logTail, len(lines)), f, strings.Join(lines[max(0, len(lines)-logTail):], "\n"))
		}
	})
}

func azsim(t testing.TB, env *localenv.Env, verb string, args map[string]any) map[string]any {
	t.Helper()
	out, err := env.Azsim(context.Background(), verb, args)
	if err != nil {
		t.Fatalf("azsim %s: %v", verb, err)
	}
	return out
}

// vaultWithSecret1 creates key vault name in the environment's resource
// group, holding secret1 with value.
func vaultWithSecret1(t testing.TB, env *localenv.Env, name, value string) {
	t.Helper()
	azsim(t, env, "keyvault create", map[string]any{"name": name, "resourceGroup": localenv.ResourceGroup})
	azsim(t, env, "keyvault secret set", map[string]any{"vaultName": name, "name": "secret1", "value": value})
}

// manifest reads a seed manifest from testdata and fills its placeholders.
func manifest(t testing.TB, name string, fill map[string]string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for k, v := range fill {
		s = strings.ReplaceAll(s, k, v)
	}
	return []byte(s)
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last: %s)", timeout, what, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// volumeDir is where kubelet mounted a pod's CSI volume on its node.
func volumeDir(env *localenv.Env, pod *corev1.Pod, volume string) string {
	for _, n := range env.Cluster.Nodes {
		if n.Name == pod.Spec.NodeName {
			return filepath.Join(n.RootDir, "pods", string(pod.UID), "volumes", "kubernetes.io~csi", volume, "mount")
		}
	}
	return ""
}

// scheduledPod waits for the scheduler to place the pod.
func scheduledPod(t *testing.T, cs kubernetes.Interface, ns, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	waitFor(t, time.Minute, "pod "+name+" scheduled", func() (bool, string) {
		p, err := cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pod = p
		return p.Spec.NodeName != "", "pending"
	})
	return pod
}

// events lists the pod's events as reason: message.
func events(cs kubernetes.Interface, ns, pod string) []string {
	list, err := cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("involvedObject.name", pod).String()})
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range list.Items {
		out = append(out, fmt.Sprintf("%s: %s", e.Reason, e.Message))
	}
	return out
}

func restConfig(t testing.TB, env *localenv.Env) *rest.Config {
	t.Helper()
	rc, err := env.Cluster.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func unstructuredSlice(obj map[string]any, fields ...string) ([]any, bool, error) {
	return unstructured.NestedSlice(obj, fields...)
}

// setupSeedVault makes vault kvmount-e2e with secret1 = value and key1,
// grants the AKS add-on identity get on both, and applies the seed's
// user-assigned class for it.
func setupSeedVault(t testing.TB, env *localenv.Env, value string) string {
	t.Helper()
	vaultWithSecret1(t, env, "kvmount-e2e", value)
	azsim(t, env, "keyvault key create", map[string]any{"vaultName": "kvmount-e2e", "name": "key1", "kty": "RSA", "size": 2048})
	aks := azsim(t, env, "aks show", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": localenv.ClusterName})
	addon := aks["addonProfiles"].(map[string]any)["azureKeyvaultSecretsProvider"].(map[string]any)["identity"].(map[string]any)["clientId"].(string)
	for _, kind := range []string{"secretPermissions", "keyPermissions"} {
		azsim(t, env, "keyvault set-policy", map[string]any{"name": "kvmount-e2e", "spn": addon, kind: []string{"get"}})
	}
	fill := map[string]string{"<client-id>": addon, "<key-vault-name>": "kvmount-e2e", "<tenant-id>": env.TenantID}
	if err := env.Cluster.Apply(context.Background(), manifest(t, "spc-user-msi.yaml", fill)); err != nil {
		t.Fatal(err)
	}
	return addon
}

// waitContainerFile checks a file as the pod's container reads it
// (kubectl exec … cat), as the AKS article's validation step does, when
// the nodes run containers; the container may still be starting.
func waitContainerFile(t *testing.T, env *localenv.Env, pod, path, want string) {
	t.Helper()
	if env.Cluster.Runtime() != localcluster.RuntimeContainerd {
		return
	}
	waitFor(t, 60*time.Second, "kubectl exec "+pod+" -- cat "+path, func() (bool, string) {
		out, err := env.Cluster.Kubectl(context.Background(), "exec", pod, "--", "cat", path).CombinedOutput()
		return err == nil && string(out) == want, string(out)
	})
}
