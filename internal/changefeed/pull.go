package changefeed

import (
	"context"
	"errors"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/eventgrid/aznamespaces"

	"kvmount.dev/kvmount/internal/azure/kvevents"
)

// Puller reads events from an Event Grid namespace topic's subscription
// (pull delivery): outbound HTTPS only, so it suits clusters without
// ingress, and events wait in the topic while no replica is there. Each
// event is acknowledged once recorded (or found to need nothing),
// released with a delay when the classes could not be written (Event Grid
// delivers it again, up to the subscription's maximum delivery count),
// and rejected when it is malformed (dead-lettered, never retried).
type Puller struct {
	Feed     *Feed
	Receiver *aznamespaces.ReceiverClient
	// MaxEvents per receive (1–100) and MaxWait, the long poll (10–120 s).
	MaxEvents int32
	MaxWait   time.Duration
}

// Run receives until ctx ends, backing off (1 s to 1 min) while receiving
// fails.
func (p *Puller) Run(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		if err := p.once(ctx); err != nil && ctx.Err() == nil {
			p.Feed.cfg.Logger.Warn("receiving Key Vault events failed; retrying", "in", backoff, "err", err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
	}
}

// once receives one batch and settles each event.
func (p *Puller) once(ctx context.Context) error {
	maxEvents, wait := p.MaxEvents, int32(p.MaxWait/time.Second)
	if maxEvents == 0 {
		maxEvents = 32
	}
	if wait == 0 {
		wait = 30
	}
	resp, err := p.Receiver.ReceiveEvents(ctx, &aznamespaces.ReceiveEventsOptions{MaxEvents: &maxEvents, MaxWaitTime: &wait})
	if err != nil {
		return err
	}
	var ack, release, reject []string
	for _, d := range resp.Details {
		if d.BrokerProperties == nil || d.BrokerProperties.LockToken == nil {
			continue
		}
		tok := *d.BrokerProperties.LockToken
		res, err := p.Feed.Handle(ctx, SourcePull, kvevents.FromCloudEvent(d.Event))
		switch {
		case err != nil:
			p.Feed.cfg.Logger.Warn("event not recorded; released for redelivery", "id", d.Event.ID, "err", err)
			release = append(release, tok)
		case res == Malformed:
			reject = append(reject, tok)
		default:
			ack = append(ack, tok)
		}
	}
	return p.settle(ctx, ack, release, reject)
}

// settle acknowledges, releases (after ten seconds) and rejects.
func (p *Puller) settle(ctx context.Context, ack, release, reject []string) error {
	var errs []error
	if len(ack) > 0 {
		r, err := p.Receiver.AcknowledgeEvents(ctx, ack, nil)
		errs = append(errs, err, failedTokens(r.FailedLockTokens))
	}
	if len(release) > 0 {
		delay := aznamespaces.ReleaseDelayTenSeconds
		r, err := p.Receiver.ReleaseEvents(ctx, release, &aznamespaces.ReleaseEventsOptions{ReleaseDelayInSeconds: &delay})
		errs = append(errs, err, failedTokens(r.FailedLockTokens))
	}
	if len(reject) > 0 {
		r, err := p.Receiver.RejectEvents(ctx, reject, nil)
		errs = append(errs, err, failedTokens(r.FailedLockTokens))
	}
	return errors.Join(errs...)
}

// failedTokens reports lock tokens the broker did not settle (their lock
// had expired: the event comes again, and is a duplicate then).
func failedTokens(failed []aznamespaces.FailedLockToken) error {
	if len(failed) == 0 {
		return nil
	}
	msg := "lock token not settled"
	if f := failed[0]; f.Error != nil && f.Error.Message != nil {
		msg += ": " + *f.Error.Message
	}
	return errors.New(msg)
}
