package csi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	v1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	"kvmount.dev/kvmount/internal/atomicdir"
	"kvmount.dev/kvmount/internal/providers"
	"kvmount.dev/kvmount/internal/secretsync"
)

// outcome is what one publish did, for logs, metrics and events.
type outcome struct {
	provider string
	remount  bool
	skipped  bool
	changed  bool
	// refreshFailed: a refresh failed and the previous files were kept.
	refreshFailed bool
}

// publish is the path of one mount: class → tmpfs → provider → files →
// status → synced Secrets. A failed first mount leaves nothing mounted; a
// failed refresh keeps the last good files and reports through an Event.
func (d *Driver) publish(ctx context.Context, m mountRequest, v *volume) (outcome, error) {
	var out outcome
	mounted, err := atomicdir.Mounted(m.target)
	if err != nil {
		return out, status.Errorf(codes.Internal, "inspect %s: %v", m.target, err)
	}
	// A mounted target is a refresh, also when this process has no record
	// of it (the driver restarted): its files stay unless new ones come.
	out.remount = mounted
	recent := !v.lastSuccess.IsZero() && d.cfg.Now().Sub(v.lastSuccess) < d.cfg.RotationPollInterval
	if mounted && (!d.cfg.Rotation || recent) {
		out.skipped = true
		return out, nil
	}
	spc, err := d.secretProviderClass(ctx, m)
	if err != nil {
		return d.failed(ctx, m, out, mounted, err)
	}
	out.provider = string(spc.Spec.Provider)
	if !mounted {
		if err := atomicdir.MountTmpfs(m.target); err != nil {
			return d.failed(ctx, m, out, false, status.Errorf(codes.Internal, "%v", err))
		}
	}
	files, versions, err := d.callProvider(ctx, m, spc, v)
	if err == nil {
		out.changed, err = atomicdir.Write(m.target, files)
		if err != nil {
			err = status.Errorf(codes.Internal, "write files of %s: %v", m.class, err)
		}
	}
	if err != nil {
		return d.failed(ctx, m, out, mounted, err)
	}
	d.afterWrite(ctx, m, spc, v, versions, files, &out)
	return out, nil
}

// failed is fail with the outcome noting a kept refresh.
func (d *Driver) failed(ctx context.Context, m mountRequest, out outcome, wasMounted bool, err error) (outcome, error) {
	out.refreshFailed = out.remount
	return out, d.fail(ctx, m, out, wasMounted, err)
}

// fail handles a failed publish: it tells the pod (an Event with the
// provider's message) and either cleans up a first mount, so that kubelet
// retries from scratch, or keeps a refresh's last good files and reports
// success, so that kubelet does not tear the volume down (k/k #121271).
func (d *Driver) fail(ctx context.Context, m mountRequest, out outcome, wasMounted bool, err error) error {
	if out.remount {
		d.event(ctx, m.pod, eventWarning, "SecretRotationFailed", fmt.Sprintf("refreshing %s kept the previous files: %s", m.class, status.Convert(err).Message()))
		d.cfg.Metrics.rotation(out.provider, false, codeOf(err))
		d.cfg.Logger.Warn("refresh failed; previous files kept", "pod", m.pod.namespace+"/"+m.pod.name, "class", m.class, "err", err)
		return nil
	}
	if !wasMounted {
		_ = atomicdir.Unmount(m.target)
	}
	d.event(ctx, m.pod, eventWarning, "FailedMount", fmt.Sprintf("SecretProviderClass %s: %s", m.class, status.Convert(err).Message()))
	return err
}

// secretProviderClass reads the class from the pod's namespace.
func (d *Driver) secretProviderClass(ctx context.Context, m mountRequest) (*v1.SecretProviderClass, error) {
	u, err := d.cfg.Dynamic.Resource(v1.SecretProviderClassResource).Namespace(m.pod.namespace).Get(ctx, m.class, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, status.Errorf(codes.NotFound, "SecretProviderClass %s not found in namespace %s: create it there (a class must be in the pod's namespace)", m.class, m.pod.namespace)
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "read SecretProviderClass %s/%s: %v", m.pod.namespace, m.class, err)
	}
	var spc v1.SecretProviderClass
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &spc); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "SecretProviderClass %s/%s is malformed: %v", m.pod.namespace, m.class, err)
	}
	if spc.Spec.Provider == "" {
		return nil, status.Errorf(codes.InvalidArgument, "SecretProviderClass %s/%s has no spec.provider: name the provider (e.g. azure)", m.pod.namespace, m.class)
	}
	return &spc, nil
}

// callProvider sends the class's parameters merged with kubelet's volume
// attributes, the nodePublishSecretRef secrets, the default permission and
// the current object versions, and returns the files to write.
func (d *Driver) callProvider(ctx context.Context, m mountRequest, spc *v1.SecretProviderClass, v *volume) ([]atomicdir.File, map[string]string, error) {
	attrs := map[string]string{}
	for k, val := range spc.Spec.Parameters {
		attrs[k] = val
	}
	for k, val := range m.context {
		attrs[k] = val
	}
	a, _ := json.Marshal(attrs)
	s, _ := json.Marshal(m.secrets)
	perm, _ := json.Marshal(os.FileMode(0o644))
	req := &v1alpha1.MountRequest{Attributes: string(a), Secrets: string(s), TargetPath: m.target, Permission: string(perm)}
	for id, ver := range v.versions {
		req.CurrentObjectVersion = append(req.CurrentObjectVersion, &v1alpha1.ObjectVersion{Id: id, Version: ver})
	}
	resp, err := d.cfg.Providers.Mount(ctx, string(spc.Spec.Provider), req, d.cfg.ProviderTimeout)
	if err != nil {
		return nil, nil, providerError(string(spc.Spec.Provider), err)
	}
	if code := resp.GetError().GetCode(); code != "" {
		return nil, nil, status.Errorf(codes.Unavailable, "provider %s failed with error code %s", spc.Spec.Provider, code)
	}
	files := make([]atomicdir.File, 0, len(resp.GetFiles()))
	for _, f := range resp.GetFiles() {
		if f.GetMode() < 0 || f.GetMode() > 0o777 {
			return nil, nil, status.Errorf(codes.Internal, "provider %s returned file %q with mode %o", spc.Spec.Provider, f.GetPath(), f.GetMode())
		}
		files = append(files, atomicdir.File{Path: f.GetPath(), Mode: os.FileMode(f.GetMode()), Data: f.GetContents()})
	}
	versions := map[string]string{}
	for _, ov := range resp.GetObjectVersion() {
		versions[ov.GetId()] = ov.GetVersion()
	}
	return files, versions, nil
}

// providerError keeps a provider's status code and message (they are
// written for the user) and gives connection problems their own code.
func providerError(provider string, err error) error {
	switch {
	case errors.Is(err, providers.ErrNotFound), errors.Is(err, providers.ErrInvalidName):
		return status.Errorf(codes.FailedPrecondition, "%v", err)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "provider %s did not answer in time", provider)
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.Unknown {
		return status.Errorf(codes.Unavailable, "provider %s: %v", provider, err)
	}
	return st.Err()
}

// afterWrite records what was mounted: the pod status object, synced
// Secrets, the rotation event. Failures here do not fail the mount: the
// files are in place; they are reported as Events.
func (d *Driver) afterWrite(ctx context.Context, m mountRequest, spc *v1.SecretProviderClass, v *volume, versions map[string]string, files []atomicdir.File, out *outcome) {
	versionsChanged := !sameVersions(v.versions, versions)
	v.lastSuccess, v.versions = d.cfg.Now(), versions
	if versionsChanged || !v.statusDone {
		if err := d.writeStatus(ctx, m, versions); err != nil {
			d.cfg.Logger.Warn("pod status not recorded", "pod", m.pod.namespace+"/"+m.pod.name, "err", err)
		} else {
			v.statusDone = true
		}
	}
	if len(spc.Spec.SecretObjects) > 0 && (out.changed || !out.remount) {
		d.syncSecrets(ctx, m, spc, files)
	}
	if out.remount {
		d.cfg.Metrics.rotation(out.provider, out.changed, "")
		if out.changed {
			d.event(ctx, m.pod, eventNormal, "SecretRotationComplete", fmt.Sprintf("SecretProviderClass %s: new object versions mounted", m.class))
		}
	}
}

func (d *Driver) syncSecrets(ctx context.Context, m mountRequest, spc *v1.SecretProviderClass, files []atomicdir.File) {
	byPath := make(map[string][]byte, len(files))
	for _, f := range files {
		byPath[f.Path] = f.Data
	}
	owner := secretsync.Owner{Namespace: m.pod.namespace, Name: m.pod.name, UID: podUID(m)}
	written, err := secretsync.Sync(ctx, d.cfg.Dynamic, owner, spc.Spec.SecretObjects, byPath)
	d.cfg.Metrics.sync(err == nil)
	if err != nil {
		d.event(ctx, m.pod, eventWarning, "FailedToSyncSecret", err.Error())
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
// secrets and tokens would be).
func (d *Driver) record(m mountRequest, out outcome, err error, dur time.Duration) {
	attrs := []any{"pod", m.pod.namespace + "/" + m.pod.name, "class", m.class, "volume", m.volumeID, "target", filepath.Base(filepath.Dir(m.target)),
		"duration", dur.Round(time.Millisecond)}
	switch {
	case err != nil:
		d.cfg.Metrics.publishError(out.provider, codeOf(err))
		d.cfg.Logger.Warn("publish failed", append(attrs, "code", codeOf(err), "err", status.Convert(err).Message())...)
	case out.skipped:
		d.cfg.Logger.Debug("publish skipped: within the rotation poll interval", attrs...)
	case out.refreshFailed: // logged, counted and reported as an Event by fail

	default:
		d.cfg.Metrics.publish(out.provider, dur)
		d.cfg.Logger.Info("published", append(attrs, "remount", out.remount, "changed", out.changed)...)
	}
}
