package clusterbench

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// mountPhase creates every pod (pinned to its node, classes round-robin)
// and waits until each has its status object, which the driver writes
// right after the pod's files.
func (b *bench) mountPhase(ctx context.Context) error {
	b.cfg.Logf("mounting %d pods on %d nodes", b.cfg.Nodes*b.cfg.PodsPerNode, b.cfg.Nodes)
	audit0, err := b.env.Cluster.AuditCounts()
	if err != nil {
		return err
	}
	kv0 := b.kvGets(ctx)
	tok0 := b.tokens(ctx)
	b.classOf = map[string]int{}
	created := map[string]time.Time{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	sem := make(chan struct{}, 32)
	for n := range b.cfg.Nodes {
		for j := range b.cfg.PodsPerNode {
			name := fmt.Sprintf("bench-%d-%d", n, j)
			class := b.cfg.class(n, j)
			pod := benchPod(name, b.env.Cluster.Nodes[n].Name, class)
			b.classOf[name] = class
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				t := time.Now()
				if _, err := b.kube.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				mu.Lock()
				created[name] = t
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	select {
	case err := <-errs:
		return fmt.Errorf("create pods: %w", err)
	default:
	}
	first := time.Now()
	for _, t := range created {
		first = minTime(first, t)
	}
	mounted, err := b.waitStatuses(ctx, len(created), 15*time.Minute)
	if err != nil {
		return err
	}
	var took []float64
	last := first
	for name, at := range mounted {
		took = append(took, at.Sub(created[name]).Seconds())
		last = maxTime(last, at)
	}
	sort.Float64s(took)
	r := b.rep
	r.Pods = len(created)
	r.AllMountedSec, r.P50Sec, r.P95Sec, r.MaxSec = last.Sub(first).Seconds(), pct(took, 50), pct(took, 95), took[len(took)-1]
	// The audit log trails the requests a little.
	time.Sleep(2 * time.Second)
	audit1, err := b.env.Cluster.AuditCounts()
	if err != nil {
		return err
	}
	r.MountRequests = diff(audit1, audit0)
	r.MountRequestsPerPod = float64(sum(r.MountRequests)) / float64(r.Pods)
	r.MountKVReads = b.kvGets(ctx) - kv0
	r.MountTokens = subTokens(b.tokens(ctx), tok0)
	return nil
}

func benchPod(name, node string, class int) *corev1.Pod {
	ro := true
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: corev1.PodSpec{NodeName: node,
		Containers: []corev1.Container{{Name: "c", Image: "k8s.gcr.io/e2e-test-images/busybox:1.29-1", Command: []string{"/bin/sleep", "10000"},
			VolumeMounts: []corev1.VolumeMount{{Name: "kv", MountPath: "/mnt/secrets-store", ReadOnly: true}}}},
		Volumes: []corev1.Volume{{Name: "kv", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "secrets-store.csi.k8s.io",
			ReadOnly: &ro, VolumeAttributes: map[string]string{"secretProviderClass": "bench-" + strconv.Itoa(class)}}}}}}}
}

// waitStatuses polls the status objects until n pods have one, recording
// when each was first seen.
func (b *bench) waitStatuses(ctx context.Context, n int, timeout time.Duration) (map[string]time.Time, error) {
	seen := map[string]time.Time{}
	deadline := time.Now().Add(timeout)
	for len(seen) < n {
		list, err := b.dyn.Resource(spcpsGVR).Namespace("default").List(ctx, metav1.ListOptions{})
		if err == nil {
			now := time.Now()
			for _, it := range list.Items {
				pod, _, _ := unstructured.NestedString(it.Object, "status", "podName")
				if _, ok := seen[pod]; !ok && pod != "" {
					seen[pod] = now
				}
			}
		}
		if time.Now().After(deadline) {
			return seen, fmt.Errorf("only %d of %d pods mounted after %s; see the logs in %s", len(seen), n, timeout, filepath.Join(b.env.Cluster.Dir(), "logs"))
		}
		select {
		case <-ctx.Done():
			return seen, fmt.Errorf("only %d of %d pods mounted: %w; see the logs in %s", len(seen), n, ctx.Err(), filepath.Join(b.env.Cluster.Dir(), "logs"))
		case <-time.After(250 * time.Millisecond):
		}
	}
	return seen, nil
}
