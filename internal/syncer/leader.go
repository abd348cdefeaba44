package syncer

import (
	"context"
	"errors"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// ErrLostLead is returned by Run when another replica took the lead: the
// process exits and restarts as a standby, so that two replicas never
// write at once.
var ErrLostLead = errors.New("lost the lead to another replica")

// lead syncs while this replica holds the Lease. On a graceful stop the
// workers finish first, then the Lease is released, so that a standby
// takes over at once (not after the lease duration) and never while this
// replica still writes.
func (c *Controller) lead(ctx context.Context) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: c.cfg.LeaseName, Namespace: c.cfg.Namespace},
		Client:     c.kube.Leases,
		LockConfig: resourcelock.ResourceLockConfig{Identity: c.cfg.PodName},
	}
	lt := c.cfg.Leases
	if lt.Duration == 0 {
		lt = LeaseTimes{Duration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}
	}
	// The election outlives ctx until the workers are done.
	electCtx, stopElection := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElection()
	worked := make(chan error, 1)
	started := make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, LeaseDuration: lt.Duration, RenewDeadline: lt.RenewDeadline, RetryPeriod: lt.RetryPeriod,
		ReleaseOnCancel: true, Name: c.cfg.LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leading context.Context) {
				close(started)
				c.cfg.Logger.Info("leading", "lease", c.cfg.Namespace+"/"+c.cfg.LeaseName, "identity", c.cfg.PodName)
				work, stop := context.WithCancel(leading)
				defer stop()
				go func() {
					<-ctx.Done()
					stop()
				}()
				worked <- c.work(work)
				stopElection()
			},
			OnStoppedLeading: stopElection,
			OnNewLeader: func(id string) {
				if id != c.cfg.PodName {
					c.cfg.Logger.Info("standing by", "leader", id)
				}
			},
		},
	})
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		select {
		case <-started: // the workers stop, then the election
		default:
			stopElection()
		}
	}()
	le.Run(electCtx)
	select {
	case <-started:
		err := <-worked
		if ctx.Err() == nil {
			return ErrLostLead
		}
		return err
	default:
		return ctx.Err()
	}
}
