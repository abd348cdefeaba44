package csi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	v1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	"kvmount.dev/kvmount/internal/atomicdir"
	"kvmount.dev/kvmount/internal/events"
	"kvmount.dev/kvmount/internal/refresh"
	"kvmount.dev/kvmount/internal/secretsync"
)

// outcome is what one publish did, for logs, metrics and events.
type outcome struct {
	start    time.Time
	provider string
	remount  bool
	skipped  bool
	changed  bool
	// refreshFailed: a refresh failed and the previous files were kept.
	refreshFailed bool
}

// publish is the path of one mount: class → tmpfs → provider → files →
// status → synced Secrets. A volume counts as published only when its
// payload (..data) is there: a mounted but empty tmpfs, left by a driver
// that died mid-mount, is mounted again from scratch. A failed first mount
// leaves nothing mounted; a failed refresh keeps the last good files and
// reports through an Event.
func (d *Driver) publish(ctx context.Context, m mountRequest, v *volume) (outcome, error) {
	out := outcome{start: d.cfg.Now()}
	mounted, err := atomicdir.Mounted(m.target)
	if err != nil {
		return out, &localError{"inspect " + m.target, err}
	}
	// A published target is a refresh, also when this process has no
	// record of it (the driver restarted): its files stay unless new ones
	// come.
	out.remount = mounted && atomicdir.Published(m.target)
	if m.refresh != nil && !out.remount {
		// A pushed refresh only refreshes what kubelet published.
		out.skipped = true
		return out, nil
	}
	if out.remount && m.refresh == nil && !d.due(v) {
		out.skipped = true
		return out, nil
	}
	spc, err := d.cfg.Classes.Get(ctx, m.pod.namespace, m.class)
	if err == nil && spc.Spec.Provider == "" {
		err = &classError{fmt.Sprintf("SecretProviderClass %s/%s has no spec.provider: name the provider (e.g. azure)", m.pod.namespace, m.class)}
	}
	if err != nil {
		return d.failed(ctx, m, out, err)
	}
	out.provider = d.providerLabel(string(spc.Spec.Provider))
	d.warnIgnored(ctx, m, v)
	if !mounted {
		if err := atomicdir.MountTmpfsOwned(m.target, m.group, int64(d.cfg.MaxPayload)); err != nil {
			return d.failed(ctx, m, out, &localError{"mount tmpfs", err})
		}
	}
	files, versions, err := d.callProvider(ctx, m, spc, v)
	if err == nil {
		out.changed, err = atomicdir.WriteOwned(m.target, files, m.group)
		if err != nil {
			err = &localError{"write files of " + m.class, err}
		}
	}
	if err != nil {
		return d.failed(ctx, m, out, err)
	}
	if out.changed {
		d.pruneLater(m.target, v)
	}
	d.afterWrite(ctx, m, spc, v, versions, files, &out)
	return out, nil
}

// failed handles a failed publish: it either keeps a refresh's last good
// files, reports success, so that kubelet does not tear the volume down
// (k/k #121271), and tells the pod with an Event, or cleans up a first
// mount, so that kubelet retries from scratch, and returns the error, which
// kubelet records as the pod's FailedMount Event (a second Event of the
// driver's would only repeat it); if the clean-up fails, the error says
// so.
func (d *Driver) failed(ctx context.Context, m mountRequest, out outcome, err error) (outcome, error) {
	if out.remount {
		msg := status.Convert(toStatus(err, m)).Message()
		out.refreshFailed = true
		d.cfg.Metrics.refreshed(trigger(m), false, true)
		d.events.Record(ctx, m.pod.ref(), events.Warning, "SecretRotationFailed", fmt.Sprintf("refreshing %s kept the previous files: %s", m.class, msg))
		d.cfg.Metrics.rotation(out.provider, false, codeOf(toStatus(err, m)), d.cfg.Now().Sub(out.start))
		d.cfg.Logger.Warn("refresh failed; previous files kept", "pod", m.pod.namespace+"/"+m.pod.name, "class", m.class, "err", msg)
		return out, nil
	}
	if uerr := atomicdir.Unmount(m.target); uerr != nil {
		err = errors.Join(err, &localError{"clean up the failed mount", uerr})
	}
	return out, err
}

// providerLabel is the provider's name as a metric label: a provider
// installed on the node (its socket is there) or "other", so that classes
// naming arbitrary providers cannot grow the metrics without bound.
func (d *Driver) providerLabel(name string) string {
	if d.cfg.Providers != nil {
		if _, err := d.cfg.Providers.Socket(name); err == nil {
			return name
		}
	}
	return "other"
}

// warnIgnored tells the pod, once per volume, which of its
// volumeAttributes were not passed on and why.
func (d *Driver) warnIgnored(ctx context.Context, m mountRequest, v *volume) {
	if len(m.ignored) == 0 || v.warnedAttrs {
		return
	}
	v.warnedAttrs = true
	d.events.Record(ctx, m.pod.ref(), events.Warning, "IgnoredVolumeAttributes", fmt.Sprintf(
		"volumeAttributes %s ignored: a pod may only name its SecretProviderClass; the provider's parameters come from the class %s (edit the class, or create another)",
		strings.Join(m.ignored, ", "), m.class))
}

// pruneLater removes the payload a write just retired, once readers no
// longer need it, whether or not another write comes: a rotated-out secret
// must not stay in the volume.
func (d *Driver) pruneLater(target string, v *volume) {
	time.AfterFunc(atomicdir.PayloadGrace+100*time.Millisecond, func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		if atomicdir.Published(target) {
			if err := atomicdir.Prune(target); err != nil {
				d.cfg.Logger.Warn("old payload not removed", "target", target, "err", err)
			}
		}
	})
}

// callProvider sends the class's parameters with kubelet's volume
// attributes, the nodePublishSecretRef secrets, the default permission and
// the current object versions, and returns the files to write.
func (d *Driver) callProvider(ctx context.Context, m mountRequest, spc *v1.SecretProviderClass, v *volume) ([]atomicdir.File, map[string]string, error) {
	attrs := make(map[string]string, len(spc.Spec.Parameters)+len(m.context))
	for k, val := range spc.Spec.Parameters {
		attrs[k] = val
	}
	for k, val := range m.context {
		attrs[k] = val
	}
	// Only the driver says what to refresh; a class cannot.
	delete(attrs, refresh.Attribute)
	if m.refresh != nil {
		attrs[refresh.Attribute] = m.refresh.Format()
	}
	a, _ := json.Marshal(attrs)
	s, _ := json.Marshal(m.secrets)
	perm, _ := json.Marshal(os.FileMode(0o644))
	req := &v1alpha1.MountRequest{Attributes: string(a), Secrets: string(s), TargetPath: m.target, Permission: string(perm)}
	for id, ver := range v.versions {
		req.CurrentObjectVersion = append(req.CurrentObjectVersion, &v1alpha1.ObjectVersion{Id: id, Version: ver})
	}
	provider := string(spc.Spec.Provider)
	resp, err := d.cfg.Providers.Mount(ctx, provider, req, d.cfg.ProviderTimeout)
	if err != nil {
		return nil, nil, d.providerFailure(provider, m, err)
	}
	if code := resp.GetError().GetCode(); code != "" {
		return nil, nil, &providerError{provider, codes.Internal, fmt.Sprintf("provider %s failed with error code %s", provider, code)}
	}
	files := make([]atomicdir.File, 0, len(resp.GetFiles()))
	for _, f := range resp.GetFiles() {
		if f.GetMode() < 0 || f.GetMode() > 0o777 {
			return nil, nil, &providerError{provider, codes.Internal, fmt.Sprintf("provider %s returned file %q with mode %o", provider, f.GetPath(), f.GetMode())}
		}
		files = append(files, atomicdir.File{Path: f.GetPath(), Mode: os.FileMode(f.GetMode()), Data: f.GetContents()})
	}
	versions := map[string]string{}
	for _, ov := range resp.GetObjectVersion() {
		versions[ov.GetId()] = ov.GetVersion()
	}
	return files, versions, nil
}

// afterWrite records what was mounted: the pod status object, synced
// Secrets, the rotation event. Failures here do not fail the mount: the
// files are in place; they are reported as Events.
func (d *Driver) afterWrite(ctx context.Context, m mountRequest, spc *v1.SecretProviderClass, v *volume, versions map[string]string, files []atomicdir.File, out *outcome) {
	// A pushed refresh reports after a quiet moment (report.go): a change
	// refreshes every volume of its classes at once, and the status
	// objects and Events of all of them would queue at the API server
	// ahead of the other classes' change records — the files come first.
	pushed := m.refresh != nil
	if !sameVersions(v.versions, versions) {
		v.statusDone = false
	}
	v.lastSuccess, v.versions = d.cfg.Now(), versions
	if !v.statusDone && !pushed {
		d.updateStatus(ctx, m, v)
	}
	if len(spc.Spec.SecretObjects) > 0 && (out.changed || !out.remount) {
		d.syncSecrets(ctx, m, spc, files)
	}
	if out.remount {
		d.cfg.Metrics.rotation(out.provider, out.changed, "", d.cfg.Now().Sub(out.start))
		d.cfg.Metrics.refreshed(trigger(m), out.changed, false)
		if out.changed {
			d.landed(m)
		}
	}
	switch {
	case pushed && (out.changed || !v.statusDone):
		d.reports.add(m.volumeID, out.changed)
	case out.remount && out.changed:
		d.rotationComplete(ctx, m)
	}
}

// updateStatus writes the volume's status object with its versions.
func (d *Driver) updateStatus(ctx context.Context, m mountRequest, v *volume) {
	rv, err := d.writeStatus(ctx, m, v.versions, v.statusRV)
	if err != nil {
		d.cfg.Logger.Warn("pod status not recorded", "pod", m.pod.namespace+"/"+m.pod.name, "err", err)
		return
	}
	v.statusDone, v.statusRV = true, rv
}

// rotationComplete tells the pod its files changed.
func (d *Driver) rotationComplete(ctx context.Context, m mountRequest) {
	d.events.Record(ctx, m.pod.ref(), events.Normal, "SecretRotationComplete", fmt.Sprintf("SecretProviderClass %s: new object versions mounted", m.class))
}

func (d *Driver) syncSecrets(ctx context.Context, m mountRequest, spc *v1.SecretProviderClass, files []atomicdir.File) {
	byPath := make(map[string][]byte, len(files))
	for _, f := range files {
		byPath[f.Path] = f.Data
	}
	start := d.cfg.Now()
	owner := secretsync.Owner{Namespace: m.pod.namespace, Name: m.pod.name, UID: podUID(m), Class: m.class}
	written, err := secretsync.Sync(ctx, d.cfg.Dynamic, owner, spc.Spec.SecretObjects, byPath)
	d.cfg.Metrics.sync(d.providerLabel(string(spc.Spec.Provider)), len(written), err == nil, time.Since(start))
	if err != nil {
		d.events.Record(ctx, m.pod.ref(), events.Warning, "FailedToSyncSecret", err.Error())
		return
	}
	if len(written) > 0 {
		d.cfg.Logger.Info("synced secrets", "pod", m.pod.namespace+"/"+m.pod.name, "secrets", written)
	}
}

func sameVersions(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// record logs and counts a publish; the request is never logged (its
// secrets and tokens would be). At the default level only failures and
// rotations are logged: a busy node mounts thousands of volumes a day.
func (d *Driver) record(m mountRequest, out outcome, err error, dur time.Duration) {
	attrs := []any{"pod", m.pod.namespace + "/" + m.pod.name, "class", m.class, "volume", m.volumeID, "target", filepath.Base(filepath.Dir(m.target)),
		"duration", dur.Round(time.Millisecond)}
	switch {
	case err != nil:
		d.cfg.Metrics.publishError(out.provider, codeOf(err))
		d.cfg.Logger.Warn("publish failed", append(attrs, "code", codeOf(err), "err", status.Convert(err).Message())...)
	case out.skipped:
		d.cfg.Logger.Debug("publish skipped: refreshed this rotation epoch", attrs...)
	case out.refreshFailed: // logged, counted and reported as an Event by failed
	case out.remount && out.changed:
		d.cfg.Metrics.publish(out.provider, dur)
		d.cfg.Logger.Info("rotated", attrs...)
	default:
		d.cfg.Metrics.publish(out.provider, dur)
		d.cfg.Logger.Debug("published", append(attrs, "remount", out.remount, "changed", out.changed)...)
	}
}
