package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"kvmount.dev/kvmount/internal/clusterbench"
)

// TestScaleLoad runs kvmount bench cluster small (5 nodes × 20 pods, the
// fake runtime, host-process drivers and providers) and checks the load
// properties, not timings: mounting costs one API write per pod and no
// class read; tokens are one per (node, identity); a rotation poll with
// nothing changed costs no API write at all and at most one Key Vault
// read per unique (node, principal, object) and rotation epoch.
func TestScaleLoad(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs kubelets: run as root (make test)")
	}
	dir, err := os.MkdirTemp("", "kvs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	keepLogsOnFailure(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rep, err := clusterbench.Run(ctx, clusterbench.Config{Nodes: 5, PodsPerNode: 20, Classes: 4, Identities: 2, Objects: 5,
		Polls: 2, Changes: 0, PollInterval: 6 * time.Second, Dir: dir, BinDir: binDir(t), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.Print(&b)
	t.Log("\n" + b.String())
	if rep.Pods != 100 || rep.StatusObjects != 100 {
		t.Errorf("%d pods, %d status objects, want 100 each", rep.Pods, rep.StatusObjects)
	}
	for k, n := range rep.MountRequests {
		switch {
		case k == "create secretproviderclasspodstatuses", strings.HasSuffix(k, " events"):
		case (k == "watch secretproviderclasses" || k == "list secretproviderclasses") && n <= 5:
			// Each node's class cache, once: the drivers serve (and
			// register) at once and fill it in the background, so it
			// may open while the first pods mount.
		default:
			t.Errorf("mounting made %d %q requests: only the status objects' creation (and each node's one class watch) is expected", n, k)
		}
	}
	if n := rep.MountRequests["create secretproviderclasspodstatuses"]; n != 100 {
		t.Errorf("%d status objects created for 100 pods", n)
	}
	if rep.PollWrites != 0 {
		t.Errorf("unchanged polls wrote %.1f times per poll to the API server: %v", rep.PollWrites, rep.PollRequests)
	}
	if max := uint64(rep.UniquePairs * rep.PollEpochs); rep.PollKVReadsTotal > max {
		t.Errorf("%d Key Vault reads over %.1f s (%d epochs) for %d unique (node, principal, object): more than one per pair and epoch", rep.PollKVReadsTotal, rep.PollWindowSec, rep.PollEpochs, rep.UniquePairs)
	}
	if maxTokens := uint64(5 * 2); rep.MountTokens.IMDS > maxTokens || rep.PollTokens.IMDS > 0 {
		t.Errorf("IMDS tokens: %d mounting, %d polling; want at most one per (node, identity) = %d, then none", rep.MountTokens.IMDS, rep.PollTokens.IMDS, maxTokens)
	}
}
