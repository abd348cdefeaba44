package epoch

import (
	"fmt"
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	c := Clock{Period: 2 * time.Minute, Phase: 30 * time.Second}
	base := time.Unix(1_800_000_000, 0).Truncate(2 * time.Minute) // an epoch boundary before the phase
	tests := []struct {
		at   time.Duration // after base
		want int64         // relative to the epoch of base+phase
	}{
		{30 * time.Second, 0},
		{2*time.Minute + 29*time.Second, 0},
		{2*time.Minute + 30*time.Second, 1},
		{29 * time.Second, -1},
	}
	e0 := c.Of(base.Add(c.Phase))
	for _, tt := range tests {
		if got := c.Of(base.Add(tt.at)) - e0; got != tt.want {
			t.Errorf("epoch at base+%s = %d, want %d", tt.at, got, tt.want)
		}
	}
	if s := c.Start(e0 + 1); !s.Equal(base.Add(c.Phase + 2*time.Minute)) {
		t.Errorf("start of the next epoch = %s", s)
	}
	if (Clock{}).Of(time.Now()) != 0 {
		t.Error("a clock without period must have one epoch")
	}
}

// TestPhaseSpread: the phases of a hundred node names cover the period
// rather than bunching at one instant.
func TestPhaseSpread(t *testing.T) {
	period := 2 * time.Minute
	buckets := make([]int, 4)
	for i := range 100 {
		p := PhaseOf(fmt.Sprintf("aks-nodepool1-12345678-vmss%06d", i), period)
		if p < 0 || p >= period {
			t.Fatalf("phase %s outside [0, %s)", p, period)
		}
		buckets[p*4/period]++
	}
	for i, n := range buckets {
		if n < 10 {
			t.Errorf("quarter %d of the period holds %d of 100 nodes: %v", i, n, buckets)
		}
	}
	if PhaseOf("a", period) != PhaseOf("a", period) {
		t.Error("the phase of a name must not change")
	}
}
