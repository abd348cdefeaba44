// Package bench drives any Secrets Store provider over its unix socket with
// the same Mount request, C at a time, for a duration or a count, and
// reports latency percentiles, throughput, errors by gRPC code and — when
// the backend is azsim — Key Vault requests per mount. It speaks only the
// public provider API, so it measures kvmount's provider and any other
// implementation alike.
package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"kvmount.dev/kvmount/internal/socket"
)

// Config is one benchmark run.
type Config struct {
	// Endpoint is the provider's socket, unix:///path.
	Endpoint string
	Request  *v1alpha1.MountRequest
	// Concurrency mounts run at once (default 1).
	Concurrency int
	// Duration or Count ends the run; Count wins when both are set.
	Duration time.Duration
	Count    int
	// Timeout bounds each Mount (default 2 minutes, kubelet's).
	Timeout time.Duration
	// KVRequests, if set, reads the backend's Key Vault request counter;
	// it is called before and after the run.
	KVRequests func(context.Context) (uint64, error)
}

// Result is a run's figures.
type Result struct {
	Mounts        int
	Errors        map[string]int
	Elapsed       time.Duration
	P50, P95, P99 time.Duration
	Max           time.Duration
	// KVPerMount is Key Vault requests per mount, -1 when unknown.
	KVPerMount float64
}

// Run benchmarks cfg.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Concurrency < 1 {
		cfg.Concurrency = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Minute
	}
	if cfg.Count == 0 && cfg.Duration == 0 {
		cfg.Count = 100
	}
	path, err := socket.Path(cfg.Endpoint)
	if err != nil {
		return Result{}, err
	}
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return Result{}, err
	}
	defer conn.Close()
	client := v1alpha1.NewCSIDriverProviderClient(conn)
	before, err := kvCount(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	lat, errs, elapsed := drive(ctx, cfg, client)
	res := summarize(lat, errs, elapsed)
	res.KVPerMount = -1
	if cfg.KVRequests != nil && res.Mounts > 0 {
		after, err := kvCount(ctx, cfg)
		if err != nil {
			return res, err
		}
		res.KVPerMount = float64(after-before) / float64(res.Mounts)
	}
	return res, nil
}

func kvCount(ctx context.Context, cfg Config) (uint64, error) {
	if cfg.KVRequests == nil {
		return 0, nil
	}
	n, err := cfg.KVRequests(ctx)
	if err != nil {
		return 0, fmt.Errorf("read Key Vault request counter: %w", err)
	}
	return n, nil
}

// drive runs the mounts and collects each one's latency and error code.
func drive(ctx context.Context, cfg Config, client v1alpha1.CSIDriverProviderClient) ([]time.Duration, map[string]int, time.Duration) {
	var (
		mu   sync.Mutex
		lat  []time.Duration
		errs = map[string]int{}
		next int
	)
	deadline := time.Time{}
	if cfg.Count == 0 {
		deadline = time.Now().Add(cfg.Duration)
	}
	take := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil || (cfg.Count > 0 && next >= cfg.Count) || (!deadline.IsZero() && time.Now().After(deadline)) {
			return false
		}
		next++
		return true
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Go(func() {
			for take() {
				d, err := mountOnce(ctx, client, cfg)
				mu.Lock()
				lat = append(lat, d)
				if err != nil {
					errs[status.Code(err).String()]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return lat, errs, time.Since(start)
}

func mountOnce(ctx context.Context, client v1alpha1.CSIDriverProviderClient, cfg Config) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	t := time.Now()
	_, err := client.Mount(ctx, cfg.Request)
	return time.Since(t), err
}

func summarize(lat []time.Duration, errs map[string]int, elapsed time.Duration) Result {
	r := Result{Mounts: len(lat), Errors: errs, Elapsed: elapsed}
	if len(lat) == 0 {
		return r
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	r.P50, r.P95, r.P99, r.Max = pct(0.50), pct(0.95), pct(0.99), lat[len(lat)-1]
	return r
}

// Print writes a result for a terminal.
func (r Result) Print(w io.Writer) {
	rate := float64(r.Mounts) / r.Elapsed.Seconds()
	fmt.Fprintf(w, "mounts:      %d in %s (%.1f mounts/s)\n", r.Mounts, r.Elapsed.Round(time.Millisecond), rate)
	fmt.Fprintf(w, "latency:     p50 %s  p95 %s  p99 %s  max %s\n", round(r.P50), round(r.P95), round(r.P99), round(r.Max))
	failed := 0
	codes := make([]string, 0, len(r.Errors))
	for c, n := range r.Errors {
		failed += n
		codes = append(codes, fmt.Sprintf("%s=%d", c, n))
	}
	sort.Strings(codes)
	fmt.Fprintf(w, "errors:      %d %v\n", failed, codes)
	if r.KVPerMount >= 0 {
		fmt.Fprintf(w, "key vault:   %.2f requests per mount\n", r.KVPerMount)
	}
}

func round(d time.Duration) time.Duration {
	if d > 10*time.Millisecond {
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
