package clusterbench

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// pollPhase runs the rotation polls: Changes objects get a new version
// before each, then one poll interval passes; it counts what the polls
// cost and measures how long the last change took to reach every pod.
func (b *bench) pollPhase(ctx context.Context) error {
	r := b.rep
	b.cfg.Logf("%d rotation polls of %s", b.cfg.Polls, b.cfg.PollInterval)
	// Let the mount phase's first refreshes settle: one interval.
	time.Sleep(b.cfg.PollInterval + time.Second)
	audit0, err := b.env.Cluster.AuditCounts()
	if err != nil {
		return err
	}
	kv0, tok0 := b.kvGets(ctx), b.tokens(ctx)
	cpu0 := b.cpu()
	start := time.Now()
	var changedAt time.Time
	for p := range b.cfg.Polls {
		for o := range b.cfg.Changes {
			if _, err := b.az(ctx, "keyvault secret set", map[string]any{"vaultName": vault, "name": objectName(o), "value": fmt.Sprintf("v%d-%d", p+1, o)}); err != nil {
				return err
			}
		}
		changedAt = time.Now()
		time.Sleep(b.cfg.PollInterval)
	}
	if b.cfg.Changes > 0 {
		at, err := b.waitRotated(ctx, changedAt, 3*b.cfg.PollInterval+time.Minute)
		if err != nil {
			return err
		}
		r.RotationSec = at.Sub(changedAt).Seconds()
	}
	time.Sleep(2 * time.Second)
	elapsed := time.Since(start)
	audit1, err := b.env.Cluster.AuditCounts()
	if err != nil {
		return err
	}
	// Per poll: per poll interval of the window measured (the last
	// change's propagation and the audit log's lag included).
	polls := elapsed.Seconds() / b.cfg.PollInterval.Seconds()
	r.PollRequests = map[string]float64{}
	for k, v := range diff(audit1, audit0) {
		r.PollRequests[k] = float64(v) / polls
		if verb, _, _ := strings.Cut(k, " "); verb != "get" && verb != "list" && verb != "watch" {
			r.PollWrites += float64(v) / polls
		}
	}
	r.PollKVReadsTotal = b.kvGets(ctx) - kv0
	r.PollKVReads = float64(r.PollKVReadsTotal) / polls
	r.PollWindowSec = elapsed.Seconds()
	// Every node's epochs are offset, so the window touches at most one
	// more epoch per node than it spans.
	r.PollEpochs = int(math.Ceil(polls)) + 1
	r.PollTokens = subTokens(b.tokens(ctx), tok0)
	r.UniquePairs = b.uniquePairs()
	r.StatusObjects = b.statusObjects(ctx)
	cpu1 := b.cpu()
	for i, n := range b.env.Nodes {
		r.DriverRSSMiB = append(r.DriverRSSMiB, rssMiB(b.pid(n.Name+"-driver")))
		r.ProviderRSSMiB = append(r.ProviderRSSMiB, rssMiB(b.pid(n.Name+"-provider")))
		r.DriverCPUPct = append(r.DriverCPUPct, 100*(cpu1[2*i]-cpu0[2*i])/elapsed.Seconds())
		r.ProviderCPUPct = append(r.ProviderCPUPct, 100*(cpu1[2*i+1]-cpu0[2*i+1])/elapsed.Seconds())
	}
	return nil
}

// waitRotated waits until every pod's status object shows a version of
// object s0 newer than the one it had (its version is the newest in
// azsim).
func (b *bench) waitRotated(ctx context.Context, since time.Time, timeout time.Duration) (time.Time, error) {
	show, err := b.az(ctx, "keyvault secret show", map[string]any{"vaultName": vault, "name": objectName(0)})
	if err != nil {
		return time.Time{}, err
	}
	id, _ := show["id"].(string)
	want := id[strings.LastIndex(id, "/")+1:]
	deadline := time.Now().Add(timeout)
	for {
		list, err := b.dyn.Resource(spcpsGVR).Namespace("default").List(ctx, metav1.ListOptions{})
		done := 0
		if err == nil {
			for _, it := range list.Items {
				objs, _, _ := unstructured.NestedSlice(it.Object, "status", "objects")
				for _, o := range objs {
					if m, ok := o.(map[string]any); ok && m["id"] == "secret/"+objectName(0) && m["version"] == want {
						done++
					}
				}
			}
		}
		if done >= len(b.classOf) {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%d of %d pods rotated to %s within %s", done, len(b.classOf), want, timeout)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// uniquePairs is the number of (node, principal, object) the pods need:
// the most Key Vault reads a poll should ever cost.
func (b *bench) uniquePairs() int { return b.cfg.readers() * b.cfg.Objects }

func (b *bench) statusObjects(ctx context.Context) int {
	list, err := b.dyn.Resource(spcpsGVR).Namespace("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return -1
	}
	return len(list.Items)
}
