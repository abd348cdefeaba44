package clusterbench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
)

// Print writes the report as a table.
func (r Report) Print(w io.Writer) {
	c := r.Config
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	mode := fmt.Sprintf("poll %s, %d polls changing %d objects", c.PollInterval, c.Polls, c.Changes)
	if r.Push != nil {
		mode = fmt.Sprintf("push: Key Vault's events through Event Grid, %d changes of %d objects", r.Push.Events, max(c.Changes, 1))
	}
	fmt.Fprintf(tw, "%d nodes × %d pods, %d classes of %d objects, %d identities, %s\n\n", c.Nodes, c.PodsPerNode, c.Classes, c.Objects, c.Identities, mode)
	rows := [][2]string{
		{"environment up", fmt.Sprintf("%.1f s", r.StartSec)},
		{"all pods mounted", fmt.Sprintf("%.2f s after the first pod (p50 %.2f s, p95 %.2f s, max %.2f s per pod)", r.AllMountedSec, r.P50Sec, r.P95Sec, r.MaxSec)},
		{"driver API requests, mounting", fmt.Sprintf("%d (%.2f per pod): %s", sum(r.MountRequests), r.MountRequestsPerPod, formatCounts(r.MountRequests, "%d"))},
		{"Key Vault reads, mounting", fmt.Sprintf("%d (%d pods × %d objects = %d)", r.MountKVReads, r.Pods, c.Objects, r.Pods*c.Objects)},
		{"tokens, mounting", fmt.Sprintf("Entra %d, IMDS %d, NMI %d", r.MountTokens.Entra, r.MountTokens.IMDS, r.MountTokens.NMI)},
		{"driver API requests per poll", fmt.Sprintf("%.1f (writes %.1f): %s", sum(r.PollRequests), r.PollWrites, formatCounts(r.PollRequests, "%.1f"))},
		{"Key Vault reads per poll", fmt.Sprintf("%.1f (unique node × principal × object: %d)", r.PollKVReads, r.UniquePairs)},
		{"tokens, polling", fmt.Sprintf("Entra %d, IMDS %d, NMI %d over %d polls", r.PollTokens.Entra, r.PollTokens.IMDS, r.PollTokens.NMI, c.Polls)},
		{"a new version in every pod", fmt.Sprintf("%.1f s after it was set", r.RotationSec)},
		{"objects the driver keeps in etcd", fmt.Sprintf("%d status objects", r.StatusObjects)},
		{"driver RSS per node", spread(r.DriverRSSMiB, "MiB")},
		{"provider RSS per node", spread(r.ProviderRSSMiB, "MiB")},
		{"driver CPU per node, polling", spread(r.DriverCPUPct, "%")},
		{"provider CPU per node, polling", spread(r.ProviderCPUPct, "%")},
	}
	if p := r.Push; p != nil {
		rows = append(rows[:5], [][2]string{
			{"a new version in every pod, pushed", fmt.Sprintf("files: p50 %.2f s, max %.2f s after it was set; status objects: p50 %.2f s, max %.2f s (%d changes; polls hourly)", p.P50Sec, p.MaxSec, p.StatusP50Sec, p.StatusMaxSec, p.Events)},
			{"Key Vault reads per change", fmt.Sprintf("%.1f (readers: %d node × principal pairs mount the object)", p.KVReadsPerEvent, p.Readers)},
			{"controller API writes per change", fmt.Sprintf("%.1f (one per class that reads the object: %d)", p.ClassWrites, c.Classes)},
			{"driver API writes per change", fmt.Sprintf("%.1f: %s", sum(p.DriverWrites), formatCounts(p.DriverWrites, "%.1f"))},
		}...)
		rows = append(rows, [][2]string{{"objects the driver keeps in etcd", fmt.Sprintf("%d status objects", r.StatusObjects)},
			{"driver RSS per node", spread(r.DriverRSSMiB, "MiB")}, {"provider RSS per node", spread(r.ProviderRSSMiB, "MiB")}}...)
	}
	for _, row := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	tw.Flush()
}

// formatCounts lists m's entries by key ("get pods 3, list nodes 1"), or
// "none".
func formatCounts[V int | float64](m map[string]V, verb string) string {
	if len(m) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s "+verb, k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// spread is min / median / max of per-node values.
func spread(v []float64, unit string) string {
	if len(v) == 0 {
		return "-"
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	return fmt.Sprintf("min %.1f, median %.1f, max %.1f %s", s[0], s[len(s)/2], s[len(s)-1], unit)
}
