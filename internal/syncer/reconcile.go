package syncer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spcv1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	ssv1 "kvmount.dev/kvmount/internal/apis/secretsync/v1alpha1"
	"kvmount.dev/kvmount/internal/events"
	"kvmount.dev/kvmount/internal/providers"
)

// failure is a sync that could not complete: the condition reason, a
// message that names the object and the fix, and whether to retry with
// backoff (a transient cause) or wait for a change.
type failure struct {
	reason, msg string
	retry       bool
}

func (f *failure) Error() string { return f.reason + ": " + f.msg }

// sync brings one SecretSync's Secret in line: validate, read the class,
// ask the provider (shared with SecretSyncs asking the same), map files to
// keys, write the Secret if anything differs, record the outcome.
func (c *Controller) sync(ctx context.Context, key string) error {
	start := c.cfg.Now()
	obj, exists, err := c.ssInformer.GetIndexer().GetByKey(key)
	if err != nil {
		return &retryLater{err}
	}
	if !exists {
		c.forget(key)
		return nil
	}
	ss, err := decode[ssv1.SecretSync](obj)
	if err != nil {
		return err
	}
	if ss.Spec.SecretSyncControllerName != c.cfg.Name {
		return nil // another controller's
	}
	n := c.take(key)
	o, err := c.syncOne(ctx, ss, n)
	c.report(ctx, ss, o, err, c.cfg.Now().Sub(start))
	if serr := c.setStatus(ctx, ss, o); serr != nil && !apierrors.IsNotFound(serr) {
		c.cfg.Logger.Warn("status not written", "secretSync", key, "err", serr)
		if err == nil {
			err = &retryLater{serr}
		}
	}
	var f *failure
	switch {
	case err == nil:
		c.schedulePoll(key, string(ss.UID))
		return nil
	case errors.As(err, &f) && !f.retry:
		c.schedulePoll(key, string(ss.UID))
		return err
	}
	c.refail(key, n)
	return &retryLater{err}
}

// syncOne does the work of sync for one SecretSync of this controller.
func (c *Controller) syncOne(ctx context.Context, ss *ssv1.SecretSync, n need) (outcome, error) {
	fail := func(f *failure) (outcome, error) { return outcome{reason: f.reason, msg: f.msg}, f }
	if f := invalid(ss); f != nil {
		return fail(f)
	}
	spc, f := c.class(ss)
	if f != nil {
		return fail(f)
	}
	a := c.fetch(ctx, ss, spc, n)
	if a.err != nil {
		return fail(fetchFailure(ss, spc, a.err))
	}
	data, missing, err := secretData(ss, a.files)
	if err != nil {
		return fail(&failure{reason: ssv1.ReasonRemoteSecretStoreFailure, msg: err.Error()})
	}
	actual, f := c.actual(ctx, ss)
	if f != nil {
		return fail(f)
	}
	if len(missing) > 0 {
		if !c.cfg.PartialSync || actual == nil {
			return fail(missingFailure(ss, spc, missing, a.files, false))
		}
		keepMissing(ss, data, missing, actual)
	}
	want := desired(ss, data)
	o := outcome{ok: true, hash: syncHash(ss, spc, a.versions)}
	cur := actual
	if changed := c.changes(want, actual); changed != nil {
		written, err := c.write(ctx, want, actual)
		var fe *foreignError
		if errors.As(err, &fe) {
			c.setForeign(ss, true)
		}
		if err != nil {
			return fail(writeFailure(ss, err))
		}
		o.written, o.created, cur = true, actual == nil, written
		c.announce(ctx, ss, actual, changed)
	}
	c.remember(ss.Namespace+"/"+ss.Name, a.versions, digestOf(cur))
	if len(missing) > 0 {
		f := missingFailure(ss, spc, missing, a.files, true)
		return outcome{reason: f.reason, msg: f.msg}, f
	}
	return o, nil
}

// changes is what differs between the wanted and the actual Secret (nil:
// up to date; a missing Secret differs in everything).
func (c *Controller) changes(want, actual *corev1.Secret) []string {
	if actual == nil {
		return []string{"created"}
	}
	return differs(want, actual)
}

// invalid checks what the API server's validation may not have (an older
// CRD, a SecretSync written before the rules): the same rules as the CRD.
func invalid(ss *ssv1.SecretSync) *failure {
	errs := ssv1.Validate(ss)
	if len(errs) == 0 {
		return nil
	}
	reason := ssv1.ReasonControllerSyncError
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
		switch {
		case strings.HasSuffix(e.Field, ".labels"):
			reason = ssv1.ReasonInvalidLabel
		case strings.HasSuffix(e.Field, ".annotations"):
			reason = ssv1.ReasonInvalidAnnotation
		}
	}
	return &failure{reason: reason, msg: "the SecretSync is invalid: " + strings.Join(msgs, "; ")}
}

// class returns the SecretSync's class, or why it cannot be used.
func (c *Controller) class(ss *ssv1.SecretSync) (*spcv1.SecretProviderClass, *failure) {
	obj, ok, err := c.spcInformer.GetIndexer().GetByKey(ss.Namespace + "/" + ss.Spec.SecretProviderClassName)
	if err != nil || !ok {
		return nil, &failure{reason: ssv1.ReasonClassMisconfigured, msg: fmt.Sprintf("SecretProviderClass %s not found in namespace %s: create it there, or fix spec.secretProviderClassName", ss.Spec.SecretProviderClassName, ss.Namespace)}
	}
	spc, err := decode[spcv1.SecretProviderClass](obj)
	if err != nil {
		return nil, &failure{reason: ssv1.ReasonClassMisconfigured, msg: fmt.Sprintf("SecretProviderClass %s/%s is malformed: %v", ss.Namespace, ss.Spec.SecretProviderClassName, err)}
	}
	if spc.Spec.Provider == "" {
		return nil, &failure{reason: ssv1.ReasonClassMisconfigured, msg: fmt.Sprintf("SecretProviderClass %s/%s has no spec.provider: name the provider (e.g. azure)", ss.Namespace, spc.Name)}
	}
	if why := unsupportedIdentity(spc); why != "" {
		return nil, &failure{reason: ssv1.ReasonClassMisconfigured, msg: fmt.Sprintf("SecretProviderClass %s/%s: %s", ss.Namespace, spc.Name, why)}
	}
	return spc, nil
}

// unsupportedIdentity refuses what cannot work for a SecretSync. Pod
// identity (aad-pod-identity) gives the identity bound to the pod that
// asks — here the controller's pod, whatever SecretSync asks — so it would
// lend the controller's identity to every SecretSync of the cluster.
func unsupportedIdentity(spc *spcv1.SecretProviderClass) string {
	if spc.Spec.Provider == "azure" && strings.EqualFold(spc.Spec.Parameters["usePodIdentity"], "true") {
		return "usePodIdentity cannot serve a SecretSync: pod identity gives the identity of the pod that asks, which is the sync controller's for every SecretSync; use workload identity (clientID and the SecretSync's serviceAccountName) or identity binding (useAzureTokenProxy)"
	}
	return ""
}

// actual is the Secret of the SecretSync's name as the cache (or, without
// RepairDrift, the API server) has it; nil when there is none. A Secret
// that is not the SecretSync's own is refused.
func (c *Controller) actual(ctx context.Context, ss *ssv1.SecretSync) (*corev1.Secret, *failure) {
	var s *corev1.Secret
	if c.secretInformer != nil {
		obj, ok, err := c.secretInformer.GetIndexer().GetByKey(ss.Namespace + "/" + ss.Name)
		if err != nil {
			return nil, &failure{reason: ssv1.ReasonControllerSyncError, msg: err.Error(), retry: true}
		}
		if ok {
			s = obj.(*corev1.Secret)
		}
	}
	if s == nil && c.foreign(ss) {
		// Known to be someone else's: read it (it may be gone by now)
		// rather than try a create that fails every poll.
		got, err := c.kube.Core.Secrets(ss.Namespace).Get(ctx, ss.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			c.setForeign(ss, false)
		case err != nil:
			return nil, &failure{reason: ssv1.ReasonControllerSyncError, msg: err.Error(), retry: true}
		default:
			s = got
		}
	}
	if s == nil {
		return nil, nil
	}
	if err := owned(ss, s); err != nil {
		c.setForeign(ss, true)
		return nil, &failure{reason: ssv1.ReasonControllerPatchError, msg: err.Error()}
	}
	return s, nil
}

func (c *Controller) foreign(ss *ssv1.SecretSync) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.states[ss.Namespace+"/"+ss.Name]
	return st != nil && st.foreign
}

func (c *Controller) setForeign(ss *ssv1.SecretSync, v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.states[ss.Namespace+"/"+ss.Name]; st != nil {
		st.foreign = v
	}
}

// keepMissing fills the keys whose files did not come with their last
// values (partial sync).
func keepMissing(ss *ssv1.SecretSync, data map[string][]byte, missing []string, actual *corev1.Secret) {
	for _, d := range ss.Spec.SecretObject.Data {
		for _, m := range missing {
			if d.SourcePath == m {
				if v, ok := actual.Data[d.TargetKey]; ok {
					data[d.TargetKey] = v
				}
			}
		}
	}
}

// fetchFailure explains a failed provider call.
func fetchFailure(ss *ssv1.SecretSync, spc *spcv1.SecretProviderClass, err error) *failure {
	var te *tokenError
	var pe *providerError
	var rl *retryLater
	switch {
	case errors.As(err, &te) && apierrors.IsNotFound(te.err):
		return &failure{reason: ssv1.ReasonControllerSyncError, msg: fmt.Sprintf("service account %s not found in namespace %s: create it, or fix spec.serviceAccountName", ss.Spec.ServiceAccountName, ss.Namespace)}
	case errors.As(err, &te) && (apierrors.IsForbidden(te.err) || apierrors.IsInvalid(te.err)):
		return &failure{reason: ssv1.ReasonControllerSyncError, msg: fmt.Sprintf("the controller may not mint the token: %v (check the controller's --token-request-audience against the chart's admission policy and RBAC)", te)}
	case errors.As(err, &te):
		return &failure{reason: ssv1.ReasonControllerSyncError, msg: err.Error(), retry: true}
	case errors.Is(err, providers.ErrNotFound), errors.Is(err, providers.ErrInvalidName):
		return &failure{reason: ssv1.ReasonClassMisconfigured, msg: fmt.Sprintf("SecretProviderClass %s/%s: %v (the provider runs in the controller's pod: is its container there?)", ss.Namespace, spc.Name, err), retry: true}
	case errors.As(err, &pe):
		st, _ := status.FromError(pe.err)
		retry := st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded || st.Code() == codes.ResourceExhausted || st.Code() == codes.Unknown || errors.Is(pe.err, context.DeadlineExceeded)
		return &failure{reason: ssv1.ReasonProviderError, msg: fmt.Sprintf("provider %s (SecretProviderClass %s/%s, service account %s): %s", pe.provider, ss.Namespace, spc.Name, ss.Spec.ServiceAccountName, st.Message()), retry: retry}
	case errors.As(err, &rl):
		return &failure{reason: ssv1.ReasonControllerSyncError, msg: err.Error(), retry: true}
	}
	return &failure{reason: ssv1.ReasonControllerSyncError, msg: err.Error(), retry: true}
}

// missingFailure names the files a SecretSync asks for that the provider
// did not return, and the files it did.
func missingFailure(ss *ssv1.SecretSync, spc *spcv1.SecretProviderClass, missing []string, files map[string][]byte, kept bool) *failure {
	got := slices.Sorted(maps.Keys(files))
	what := "nothing was written"
	if kept {
		what = "the other keys were written, these keep their last values"
	}
	return &failure{reason: ssv1.ReasonRemoteSecretStoreFailure, msg: fmt.Sprintf("the provider returned no file %s for SecretProviderClass %s/%s (it returned %s); %s: make each sourcePath a file of the class (an object's objectAlias or objectName)",
		strings.Join(missing, ", "), ss.Namespace, spc.Name, orNone(got), what)}
}

// writeFailure explains a refused write: a conflict (the Secret changed
// under the controller) is retried; an admission policy's refusal is said.
func writeFailure(ss *ssv1.SecretSync, err error) *failure {
	var fe *foreignError
	if errors.As(err, &fe) {
		return &failure{reason: ssv1.ReasonControllerPatchError, msg: fe.Error()}
	}
	f := &failure{reason: ssv1.ReasonControllerPatchError, msg: fmt.Sprintf("writing Secret %s/%s: %v", ss.Namespace, ss.Name, err)}
	switch {
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err), apierrors.IsServerTimeout(err), apierrors.IsTooManyRequests(err), apierrors.IsServiceUnavailable(err):
		f.retry = true
	case apierrors.IsInvalid(err) && strings.Contains(err.Error(), "ValidatingAdmissionPolicy"):
		f.msg += " (refused by the chart's admission policy: the controller may only write Secrets of the allowed types that a SecretSync of the same name owns)"
	}
	return f
}

// announce tells the SecretSync what the write did: created, updated, or
// restored after someone else changed it.
func (c *Controller) announce(ctx context.Context, ss *ssv1.SecretSync, actual *corev1.Secret, changed []string) {
	ref := events.Object{APIVersion: ssv1.APIVersion, Kind: ssv1.Kind, Name: ss.Name, Namespace: ss.Namespace, UID: string(ss.UID)}
	key := ss.Namespace + "/" + ss.Name
	c.mu.Lock()
	st := c.states[key]
	drift := actual != nil && st != nil && st.applied != "" && st.applied != digestOf(actual)
	c.mu.Unlock()
	switch {
	case actual == nil:
		c.events.RecordObject(ctx, ref, corev1.EventTypeNormal, "SecretCreated", fmt.Sprintf("created Secret %s with %d key(s) from SecretProviderClass %s", key, len(ss.Spec.SecretObject.Data), ss.Spec.SecretProviderClassName))
	case drift:
		c.events.RecordObject(ctx, ref, corev1.EventTypeWarning, "SecretRestored", fmt.Sprintf("Secret %s was changed outside the controller (%s): restored", key, strings.Join(changed, ", ")))
	default:
		c.events.RecordObject(ctx, ref, corev1.EventTypeNormal, "SecretUpdated", fmt.Sprintf("updated Secret %s: %s", key, strings.Join(changed, ", ")))
	}
}

// report logs, counts and (for failures) tells the SecretSync how a sync
// went. Messages name objects, never values.
func (c *Controller) report(ctx context.Context, ss *ssv1.SecretSync, o outcome, err error, d time.Duration) {
	key := ss.Namespace + "/" + ss.Name
	c.cfg.Metrics.sync(ss.Namespace, o, err, d)
	if err == nil {
		c.cfg.Logger.Debug("synced", "secretSync", key, "written", o.written, "duration", d.Round(time.Millisecond))
		return
	}
	var f *failure
	if !errors.As(err, &f) {
		f = &failure{reason: ssv1.ReasonControllerSyncError, msg: err.Error()}
	}
	c.cfg.Logger.Warn("sync failed", "secretSync", key, "reason", f.reason, "err", f.msg)
	ref := events.Object{APIVersion: ssv1.APIVersion, Kind: ssv1.Kind, Name: ss.Name, Namespace: ss.Namespace, UID: string(ss.UID)}
	c.events.RecordObject(ctx, ref, corev1.EventTypeWarning, f.reason, f.msg)
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "no file"
	}
	return strings.Join(names, ", ")
}
