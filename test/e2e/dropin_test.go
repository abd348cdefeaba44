package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"kvmount.dev/kvmount/internal/localenv"
)

// chartArgs reads an argument list of testdata/upstream-args, with the
// container's paths moved under root (as the DaemonSet's hostPath mounts
// move them) and $(VAR) expanded from env, as kubelet does.
func chartArgs(t *testing.T, file, root string, env map[string]string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "upstream-args", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	paths := []struct{ container, host string }{
		{"/var/run/secrets-store-csi-providers", "providers"},
		{"/etc/kubernetes/secrets-store-csi-providers", "providers-etc"},
		{"/provider/", "providers/"},
		{"/csi/", "csi/"},
	}
	var args []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for _, p := range paths {
			line = strings.ReplaceAll(line, p.container, root+"/"+p.host)
		}
		for k, v := range env {
			line = strings.ReplaceAll(line, "$("+k+")", v)
		}
		args = append(args, line)
	}
	return args
}

// daemon is one binary started with upstream's arguments.
type daemon struct {
	cmd  *exec.Cmd
	done chan error
	log  *strings.Builder
}

func startDaemon(t *testing.T, bin string, args []string, env []string) *daemon {
	t.Helper()
	d := &daemon{cmd: exec.Command(bin, args...), done: make(chan error, 1), log: &strings.Builder{}}
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() { d.stop(t) })
	return d
}

// stop sends SIGTERM and wants a clean exit.
func (d *daemon) stop(t *testing.T) {
	if d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("%s exited with %v after SIGTERM:\n%s", filepath.Base(d.cmd.Path), err, d.log)
		}
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		t.Errorf("%s did not stop within 15 s of SIGTERM", filepath.Base(d.cmd.Path))
	}
}

// serving waits until check succeeds, failing if the daemon exits.
func (d *daemon) serving(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case exit := <-d.done:
			d.done <- exit
			t.Fatalf("%s exited (%v) before serving %s:\n%s", filepath.Base(d.cmd.Path), exit, what, d.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not serving %s after 30 s: %v\n%s", filepath.Base(d.cmd.Path), what, err, d.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func httpOK(url string) func() error {
	return func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	}
}

func grpcOK(sock string, call func(*grpc.ClientConn) error) func() error {
	return func() error {
		conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		return call(conn)
	}
}

// TestUpstreamChartArgs: the exact argument lists upstream's two Helm
// charts render (with default values, and with the values operators set)
// start kvmount's driver and provider, which then serve on the sockets and
// ports those charts expect, and stop cleanly on SIGTERM. Only the
// driver's --kubeconfig is added: out of a pod there is no service
// account.
func TestUpstreamChartArgs(t *testing.T) {
	env, _ := startFakeEnv(t, 1, nil)
	kubeconfig, err := env.Cluster.ServiceAccountKubeconfig("kube-system", "secrets-store-csi-driver")
	if err != nil {
		t.Fatal(err)
	}
	bin := binDir(t)
	for _, variant := range []string{"defaults", "values"} {
		t.Run(variant, func(t *testing.T) {
			root, err := os.MkdirTemp("", "kvu")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(root)
			for _, d := range []string{"providers", "providers-etc", "csi"} {
				os.MkdirAll(filepath.Join(root, d), 0o755)
			}
			vars := map[string]string{"CSI_ENDPOINT": "unix://" + filepath.Join(root, "csi", "csi.sock"), "KUBE_NODE_NAME": env.Nodes[0].Name}
			prov := startDaemon(t, filepath.Join(bin, "provider-azure"), chartArgs(t, "provider-chart-1.8.2-"+variant+".args", root, vars), nil)
			provSock := filepath.Join(root, "providers", "azure.sock")
			prov.serving(t, "Version on its socket", grpcOK(provSock, func(c *grpc.ClientConn) error {
				_, err := v1alpha1.NewCSIDriverProviderClient(c).Version(context.Background(), &v1alpha1.VersionRequest{Version: "v1alpha1"})
				return err
			}))
			prov.serving(t, "/healthz on :8989", httpOK("http://127.0.0.1:8989/healthz"))
			prov.serving(t, "/metrics on :8898", httpOK("http://127.0.0.1:8898/metrics"))

			args := append(chartArgs(t, "driver-chart-1.6.0-"+variant+".args", root, vars), "--kubeconfig="+kubeconfig)
			drv := startDaemon(t, filepath.Join(bin, "secrets-store-csi-driver"), args, []string{"KUBE_NODE_NAME=" + env.Nodes[0].Name})
			drv.serving(t, "CSI on its socket", grpcOK(filepath.Join(root, "csi", "csi.sock"), func(c *grpc.ClientConn) error {
				info, err := csipb.NewIdentityClient(c).GetPluginInfo(context.Background(), &csipb.GetPluginInfoRequest{})
				if err == nil && info.GetName() != "secrets-store.csi.k8s.io" {
					err = fmt.Errorf("plugin name %q", info.GetName())
				}
				return err
			}))
			drv.serving(t, "/metrics on :8095", httpOK("http://127.0.0.1:8095/metrics"))
			drv.stop(t)
			prov.stop(t)
			if variant == "values" && !strings.Contains(prov.log.String(), `"msg":`) {
				t.Errorf("--log-format-json=true did not make the provider log JSON:\n%s", prov.log)
			}
		})
	}
}

// TestClassWarningEvent: a class upstream mounts but that is probably a
// mistake (a misspelt field) mounts, and the provider tells the pod with a
// Warning Event, through its own service account.
func TestClassWarningEvent(t *testing.T) {
	env, cs := startEnv(t, 1)
	ctx := context.Background()
	setupSeedVault(t, env, "warned")
	addon := azsim(t, env, "aks show", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": localenv.ClusterName})["addonProfiles"].(map[string]any)["azureKeyvaultSecretsProvider"].(map[string]any)["identity"].(map[string]any)["clientId"].(string)
	params := "    useVMManagedIdentity: \"true\"\n    userAssignedIdentityID: " + addon + "\n    keyvaultName: kvmount-e2e\n    tenantId: " + env.TenantID
	class := strings.Replace(string(classYAML("typo", params)), "objectType: secret", "objectType: secret\n          objectVerison: \"\"", 1)
	if err := env.Cluster.Apply(ctx, []byte(class)); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, podWithClass("typo-pod", "typo", "", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSecretFile(t, env, cs, "typo-pod", "warned")
	waitFor(t, 30*time.Second, "the provider's warning on the pod", func() (bool, string) {
		ev := strings.Join(events(cs, "default", "typo-pod"), " | ")
		return strings.Contains(ev, "SecretProviderClassWarning") && strings.Contains(ev, "did you mean objectVersion?"), ev
	})
}
