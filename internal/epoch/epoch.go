// Package epoch cuts time into rotation epochs shared by the driver and the
// provider of one node. The driver refreshes each mounted volume once per
// epoch (at kubelet's first republish after the epoch starts) and the
// provider's node cache serves a read only within the epoch it was made
// in, so every volume of a principal on the node shares one Key Vault read
// per object per poll, and a change made in one epoch reaches every pod in
// the next. Epochs are offset per node (the phase, from the node's name),
// so that the nodes of a cluster do not poll a vault in the same second;
// both sides of a node compute the same phase from the same name.
package epoch

import (
	"hash/fnv"
	"time"
)

// Clock numbers epochs of Period, starting at Phase past the Unix epoch.
type Clock struct {
	Period, Phase time.Duration
}

// ForNode is the clock of node's epochs of period.
func ForNode(node string, period time.Duration) Clock {
	return Clock{Period: period, Phase: PhaseOf(node, period)}
}

// PhaseOf spreads node names evenly over [0, period).
func PhaseOf(node string, period time.Duration) time.Duration {
	if period <= 0 || node == "" {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(node))
	return time.Duration(h.Sum64() % uint64(period))
}

// Of is the epoch t falls in; with no period, every instant is epoch 0.
func (c Clock) Of(t time.Time) int64 {
	if c.Period <= 0 {
		return 0
	}
	n := t.UnixNano() - int64(c.Phase)
	e := n / int64(c.Period)
	if n < 0 && n%int64(c.Period) != 0 {
		e--
	}
	return e
}

// Start is when epoch e begins.
func (c Clock) Start(e int64) time.Time {
	return time.Unix(0, e*int64(c.Period)+int64(c.Phase))
}
