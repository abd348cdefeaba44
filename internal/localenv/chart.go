package localenv

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"kvmount.dev/kvmount/deploy"
	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/localcluster"
)

// The chart's release, as an operator installs it.
const (
	ReleaseName      = "kvmount"
	ReleaseNamespace = "kube-system"
	// DriverApp and ProviderApp are the app labels of the chart's driver
	// and provider pods (upstream's charts' names).
	DriverApp   = "secrets-store-csi-driver"
	ProviderApp = "csi-secrets-store-provider-azure"
)

// imageArchives are the images every node imports (nothing is pulled):
// the sandbox and the seed's busybox, then kvmount's driver, provider and
// sync controller.
var imageArchives = []string{"pause", "busybox", "secrets-store-csi-driver", "provider-azure", "secrets-sync-controller"}

// images lists the OCI archives in dir, naming the build that makes them;
// the sync controller's only with syncController.
func images(dir string, syncController bool) ([]string, error) {
	var out []string
	for _, name := range imageArchives {
		if name == "secrets-sync-controller" && !syncController {
			continue
		}
		path := filepath.Join(dir, name+".oci.tar")
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("image %s: %w (run make images)", name, err)
		}
		out = append(out, path)
	}
	return out, nil
}

// ChartValues are the values the environment installs the chart with: the
// chart's defaults but for what this machine differs in. Kubelet's root
// and the providers' dir are the path every node sees its own directory
// at; the provider is pointed at azsim (its CA, cloud and host, and the
// IMDS and NMI that answer each node as itself), with those files mounted
// read-only; rotation is on at the environment's pace and Secret sync is
// allowed, as the end-to-end tests use both.
func (e *Env) ChartValues() (map[string]any, error) {
	ep, err := azsim.ReadEndpoints(e.AzsimDir)
	if err != nil {
		return nil, err
	}
	files := e.clientFilesDir()
	nodeDir := e.Cluster.NodeDir()
	poll := e.cfg.RotationPollInterval
	if poll == 0 {
		poll = 2 * time.Minute
	}
	azsimArgs := []string{
		"--cloud-name=AzureStackCloud",
		"--cloud-env-file=" + filepath.Join(files, "cloud.json"),
		"--ca-file=" + filepath.Join(files, "ca.crt"),
		"--host-override=" + azsim.HostSuffix + "=" + ep.Address,
		// AKS's token proxy is behind the API server's address; here
		// azsim serves it. Its name is still found out from the API
		// server's certificate, as on AKS.
		"--token-proxy-url=" + ep.TokenProxy,
	}
	azsimVolumes := []any{map[string]any{"name": "azsim", "hostPath": map[string]any{"path": files, "type": "Directory"}}}
	azsimMounts := []any{map[string]any{"name": "azsim", "mountPath": files, "readOnly": true}}
	return map[string]any{
		"syncController": map[string]any{
			"enabled":              e.cfg.SyncController,
			"rotationPollInterval": poll.String(),
			"provider":             map[string]any{"extraArgs": azsimArgs},
			"volumes":              azsimVolumes,
			"volumeMounts":         azsimMounts,
			// Quick failover on these small nodes (the defaults wait 15 s
			// for a lease nobody renews); azsim's Entra ID and Event Grid
			// for Key Vault's events.
			"extraArgs": []string{"--leader-elect-lease-duration=6s", "--leader-elect-renew-deadline=4s", "--leader-elect-retry-period=1s",
				"--ca-file=" + filepath.Join(files, "ca.crt"), "--host-override=" + azsim.HostSuffix + "=" + ep.Address, "--authority-host=" + azsim.LoginURL + "/"},
		},
		"enableSecretRotation": true,
		"rotationPollInterval": poll.String(),
		"syncSecret":           map[string]any{"enabled": true},
		"linux": map[string]any{
			"kubeletRootDir":          filepath.Join(nodeDir, "k"),
			"providersDir":            filepath.Join(nodeDir, "providers"),
			"additionalProvidersDirs": []string{},
		},
		"provider": map[string]any{
			"cacheTTL":     poll.String(),
			"extraArgs":    append(azsimArgs, "--imds-endpoint="+ep.NodeIMDS, "--nmi-endpoint="+ep.NodeNMI),
			"volumes":      azsimVolumes,
			"volumeMounts": azsimMounts,
		},
	}, nil
}

// clientFilesDir holds what a client of azsim needs (its CA, the
// AzureStackCloud file), for the provider's pods to mount.
func (e *Env) clientFilesDir() string { return filepath.Join(e.cfg.Dir, "azsim-client") }

// writeClientFiles copies azsim's CA and writes the cloud file into
// clientFilesDir.
func (e *Env) writeClientFiles() error {
	dir := e.clientFilesDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ca, err := os.ReadFile(filepath.Join(e.AzsimDir, "ca.crt"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca, 0o644); err != nil {
		return err
	}
	b, err := os.ReadFile(e.CloudEnvFile)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "cloud.json"), b, 0o644)
}

// UpgradeChart upgrades the release with ChartValues and, over them, the
// values in overrides (merged key by key), and waits as Start does: how a
// test turns on what needs objects made after the start (Key Vault's
// events need the Event Grid resources and a certificate).
func (e *Env) UpgradeChart(ctx context.Context, overrides map[string]any) error {
	e.overrides = overrides
	return e.installChart(ctx)
}

// merge copies src over dst, map by map.
func merge(dst, src map[string]any) map[string]any {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				dst[k] = merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

// installChart installs (or upgrades) the chart, embedded in this binary,
// with ChartValues and waits until both DaemonSets run on every node.
func (e *Env) installChart(ctx context.Context) error {
	return e.install(ctx, false)
}

// InstallWithValues upgrades the release to the chart of a layout — the
// driver chart's (kvmount) or, with azure, the Azure provider chart's
// (kvmount-azure) — with values files as an operator passes them (-f),
// then the environment's own values over them, in that layout; and waits
// as Start does. How a test installs upstream's values files.
func (e *Env) InstallWithValues(ctx context.Context, azure bool, files ...string) error {
	e.userValues = files
	return e.install(ctx, azure)
}

func (e *Env) install(ctx context.Context, azure bool) error {
	if err := e.writeCloudEnv(); err != nil {
		return err
	}
	if err := e.writeClientFiles(); err != nil {
		return err
	}
	if err := e.writeCharts(); err != nil {
		return err
	}
	values, err := e.ChartValues()
	if err != nil {
		return err
	}
	values = merge(values, e.overrides)
	chart := e.ChartDir()
	if azure {
		values, chart = AzureLayout(values), e.AzureChartDir()
	}
	b, err := yaml.Marshal(values)
	if err != nil {
		return err
	}
	valuesFile := filepath.Join(e.cfg.Dir, "values.yaml")
	if err := os.WriteFile(valuesFile, b, 0o644); err != nil {
		return err
	}
	args := []string{"upgrade", "--install", ReleaseName, chart, "--namespace", ReleaseNamespace}
	for _, f := range e.userValues {
		args = append(args, "--values", f)
	}
	args = append(args, "--values", valuesFile, "--wait", "--timeout", "150s")
	if out, err := e.Helm(ctx, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("helm install: %w:\n%s%s", err, out, e.podProblems(context.Background()))
	}
	return e.waitPods(ctx)
}

// AzureLayout moves values of the driver chart's layout (kvmount's) into
// the Azure provider chart's (kvmount-azure's): the provider's block to the
// top level, as linux, and the rest under secrets-store-csi-driver.
func AzureLayout(v map[string]any) map[string]any {
	driver := map[string]any{}
	for k, val := range v {
		if k != "provider" {
			driver[k] = val
		}
	}
	out := map[string]any{"secrets-store-csi-driver": driver}
	if p, ok := v["provider"].(map[string]any); ok {
		linux := map[string]any{}
		for k, val := range p {
			if k == "constructPEMChain" || k == "writeCertAndKeyInSeparateFiles" {
				out[k] = val
			} else {
				linux[k] = val
			}
		}
		// The provider's socket dir is its own value in that layout.
		if dl, ok := v["linux"].(map[string]any); ok && dl["providersDir"] != nil {
			linux["providersDir"] = dl["providersDir"]
		}
		out["linux"] = linux
	}
	return out
}

// Helm is a helm command against the environment's cluster, as admin.
func (e *Env) Helm(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, e.bin("helm"), append(args, "--kubeconfig", e.Cluster.KubeconfigPath)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(e.cfg.Dir, "helm", "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(e.cfg.Dir, "helm", "config"), "HELM_DATA_HOME="+filepath.Join(e.cfg.Dir, "helm", "data"))
	return cmd
}

// ChartDir is the chart (the driver chart's layout) as the environment
// installed it; AzureChartDir is the Azure provider chart's layout.
func (e *Env) ChartDir() string { return filepath.Join(e.cfg.Dir, "chart") }

// AzureChartDir is kvmount-azure, written beside ChartDir.
func (e *Env) AzureChartDir() string { return filepath.Join(e.cfg.Dir, "chart-azure") }

// writeCharts writes the embedded charts into ChartDir and AzureChartDir.
func (e *Env) writeCharts() error {
	for root, dst := range map[string]string{"helm/kvmount": e.ChartDir(), "helm/kvmount-azure": e.AzureChartDir()} {
		if err := writeTree(root, dst); err != nil {
			return err
		}
	}
	return nil
}

// writeTree writes the embedded tree root into dst.
func writeTree(root, dst string) error {
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	return fs.WalkDir(deploy.Chart, root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dst, strings.TrimPrefix(path, root))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := deploy.Chart.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// waitPods waits until each node's driver and provider pods are ready
// (helm's --wait can pass before the DaemonSet controller has counted
// them) and records them and their metrics addresses: the driver's at
// its pod address, the provider's (host network) at the node's.
func (e *Env) waitPods(ctx context.Context) error {
	cs, err := e.Cluster.Client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for i := range e.Nodes {
		n := &e.Nodes[i]
		for {
			driver, derr := e.nodePod(ctx, cs, DriverApp, n.Name)
			provider, perr := e.nodePod(ctx, cs, ProviderApp, n.Name)
			if derr == nil && perr == nil && podReady(driver) && podReady(provider) {
				n.DriverPod, n.ProviderPod = driver.Name, provider.Name
				n.DriverMetrics = driver.Status.PodIP + ":8095"
				n.ProviderMetrics = e.Cluster.Nodes[i].IP + ":8898"
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("the chart's pods on %s are not ready after 3m%s", n.Name, e.podProblems(context.Background()))
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// nodePod is the running pod of DaemonSet app on node.
func (e *Env) nodePod(ctx context.Context, cs kubernetes.Interface, app, node string) (*corev1.Pod, error) {
	list, err := cs.CoreV1().Pods(ReleaseNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app, FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return nil, err
	}
	for i := range list.Items {
		if p := &list.Items[i]; p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			return p, nil
		}
	}
	return nil, fmt.Errorf("no running %s pod on %s", app, node)
}

// podProblems describes the release's pods that are not ready, for an
// error that says why the chart did not come up.
func (e *Env) podProblems(ctx context.Context) string {
	cs, err := e.Cluster.Client()
	if err != nil {
		return ""
	}
	list, err := cs.CoreV1().Pods(ReleaseNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=kvmount"})
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range list.Items {
		for _, st := range p.Status.ContainerStatuses {
			if st.Ready {
				continue
			}
			fmt.Fprintf(&b, "  pod %s on %s: container %s not ready", p.Name, p.Spec.NodeName, st.Name)
			if w := st.State.Waiting; w != nil {
				fmt.Fprintf(&b, " (%s: %s)", w.Reason, w.Message)
			}
			if t := st.LastTerminationState.Terminated; t != nil {
				fmt.Fprintf(&b, " (last exit %d: %s)", t.ExitCode, t.Message)
			}
			b.WriteString("\n")
			b.WriteString(e.containerLogTail(p, st.Name, 8))
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "pods not ready:\n" + b.String() + "their logs are under " + filepath.Join(e.Cluster.Dir(), "n", "*", "pod-logs") + "\n"
}

// containerLogTail is the end of a container's log on its node (kubelet's
// pod logs dir), indented, or "".
func (e *Env) containerLogTail(p corev1.Pod, container string, lines int) string {
	for _, n := range e.Cluster.Nodes {
		if n.Name != p.Spec.NodeName {
			continue
		}
		logs, _ := filepath.Glob(filepath.Join(filepath.Dir(n.RootDir), "pod-logs", p.Namespace+"_"+p.Name+"_*", container, "*.log"))
		if len(logs) == 0 {
			return ""
		}
		b, err := os.ReadFile(logs[len(logs)-1])
		if err != nil {
			return ""
		}
		all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		all = all[max(0, len(all)-lines):]
		return "    " + strings.Join(all, "\n    ") + "\n"
	}
	return ""
}

// restartDriverPod deletes node i's driver pod and waits until the
// DaemonSet's replacement runs and is ready.
func (e *Env) restartDriverPod(ctx context.Context, i int) error {
	cs, err := e.Cluster.Client()
	if err != nil {
		return err
	}
	n := &e.Nodes[i]
	zero := int64(0)
	if err := cs.CoreV1().Pods(ReleaseNamespace).Delete(ctx, n.DriverPod, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for {
		p, err := e.nodePod(ctx, cs, DriverApp, n.Name)
		if err == nil && p.Name != n.DriverPod && podReady(p) {
			n.DriverPod = p.Name
			n.DriverMetrics = p.Status.PodIP + ":8095"
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the driver's pod on %s did not come back: %w%s", n.Name, ctx.Err(), e.podProblems(context.Background()))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// LogFiles are the logs of the driver, the provider and azsim: files of
// host processes, or of the release's containers as kubelet writes them.
func (e *Env) LogFiles() []string {
	files := []string{filepath.Join(e.cfg.Dir, "logs", "azsim.log")}
	if e.Cluster.Runtime() == localcluster.RuntimeContainerd {
		logs, _ := filepath.Glob(filepath.Join(e.Cluster.Dir(), "n", "*", "pod-logs", ReleaseNamespace+"_*secrets-store*", "*", "*.log"))
		return append(files, logs...)
	}
	logs, _ := filepath.Glob(filepath.Join(e.Cluster.Dir(), "logs", "*"))
	for _, l := range logs {
		if strings.Contains(filepath.Base(l), "driver") || strings.Contains(filepath.Base(l), "provider") {
			files = append(files, l)
		}
	}
	return files
}
