package clusterbench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"kvmount.dev/kvmount/internal/azsim"
)

func (b *bench) kvGets(ctx context.Context) uint64 {
	st, err := b.env.Azsim(ctx, "keyvault stats", map[string]any{"name": vault})
	if err != nil {
		return 0
	}
	v, _ := st["Gets"].(float64)
	if v == 0 {
		v, _ = st["gets"].(float64)
	}
	return uint64(v)
}

func (b *bench) tokens(ctx context.Context) azsim.TokenStats {
	st, err := b.env.Azsim(ctx, "token stats", nil)
	if err != nil {
		return azsim.TokenStats{}
	}
	get := func(k string) uint64 { v, _ := st[k].(float64); return uint64(v) }
	return azsim.TokenStats{Entra: get("entra"), IMDS: get("imds"), NMI: get("nmi"), Proxy: get("tokenProxy")}
}

func (b *bench) pid(name string) int {
	pid, _ := b.env.Cluster.PID(name)
	return pid
}

// cpu is each node's driver and provider CPU seconds so far.
func (b *bench) cpu() []float64 {
	var out []float64
	for _, n := range b.env.Nodes {
		out = append(out, cpuSeconds(b.pid(n.Name+"-driver")), cpuSeconds(b.pid(n.Name+"-provider")))
	}
	return out
}

// cpuSeconds reads a process's user+system time from /proc (USER_HZ 100).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100
}

func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

func diff(after, before map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

func sum[V int | float64](m map[string]V) V {
	var n V
	for _, v := range m {
		n += v
	}
	return n
}

func subTokens(a, b azsim.TokenStats) azsim.TokenStats {
	return azsim.TokenStats{Entra: a.Entra - b.Entra, IMDS: a.IMDS - b.IMDS, NMI: a.NMI - b.NMI, Proxy: a.Proxy - b.Proxy}
}

func pct(sorted []float64, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, (len(sorted)*p)/100)]
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
