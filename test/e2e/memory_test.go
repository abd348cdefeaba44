package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// BenchmarkDriverMemory110Pods mounts the seed's class in 110 pods on one
// node (kubelet's default pod limit) and reports the CSI driver's and the
// provider's resident memory. Target for the driver: under 40 MiB
// (upstream measured 51–54 MiB). Run it by hand:
//
//	sudo go test -run XXX -bench DriverMemory -benchtime 1x ./test/e2e
func BenchmarkDriverMemory110Pods(b *testing.B) {
	env, cs := startFakeEnv(b, 1, nil)
	ctx := context.Background()
	setupSeedVault(b, env, "value")
	var pod map[string]any
	if err := yaml.Unmarshal(manifest(b, "pod-user-msi.yaml", nil), &pod); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		for i := range 110 {
			u := &unstructured.Unstructured{Object: pod}
			u.SetName(fmt.Sprintf("pod-%03d", i))
			if err := env.Cluster.Apply(ctx, mustJSON(b, u.Object)); err != nil {
				b.Fatal(err)
			}
		}
		deadline := time.Now().Add(5 * time.Minute)
		for {
			list, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
			if err != nil {
				b.Fatal(err)
			}
			mounted := 0
			for i := range list.Items {
				if _, err := os.Stat(filepath.Join(volumeDir(env, &list.Items[i], "secrets-store01-inline"), "secret1")); err == nil {
					mounted++
				}
			}
			if mounted == 110 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("only %d of 110 volumes mounted after 5 minutes", mounted)
			}
			time.Sleep(time.Second)
		}
		time.Sleep(5 * time.Second) // republish rounds with every volume in place
	}
	for _, who := range []string{"driver", "provider"} {
		pid, _ := env.Cluster.PID(env.Nodes[0].Name + "-" + who)
		b.ReportMetric(rssMiB(b, pid), who+"-RSS-MiB")
	}
}

func mustJSON(b *testing.B, v any) []byte {
	out, err := yaml.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

func rssMiB(b *testing.B, pid int) float64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	b.Fatal("no VmRSS in /proc status")
	return 0
}
