package syncer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"reflect"
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	spcv1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	ssv1 "kvmount.dev/kvmount/internal/apis/secretsync/v1alpha1"
)

// syncHash digests what the Secret was synced from: the class and the
// SecretSync (UID and generation each, so that a recreated or changed one
// differs), forceSynchronization, and the objects' versions the provider
// reported. It is stable across restarts and replicas. It never covers
// the secret values: upstream derives its hash from the values with
// PBKDF2 (100,000 rounds, about 0.1 s of CPU per sync) so that readers of
// the SecretSync cannot guess them; with no value in it there is nothing
// to guess, and no-op writes are avoided by comparing with the Secret
// itself (see docs/secret-sync.md).
func syncHash(ss *ssv1.SecretSync, spc *spcv1.SecretProviderClass, versions map[string]string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%d|%s|%d|%q\n", spc.UID, spc.Generation, ss.UID, ss.Generation, ss.Spec.ForceSynchronization)
	for _, id := range slices.Sorted(maps.Keys(versions)) {
		fmt.Fprintf(h, "%q=%q\n", id, versions[id])
	}
	return "kvm1:" + hex.EncodeToString(h.Sum(nil))
}

// outcome is what one sync did, for the status.
type outcome struct {
	ok      bool
	created bool
	reason  string
	msg     string
	hash    string
	written bool
}

// setStatus writes the SecretSync's status if the outcome changes it: the
// conditions (SecretCreated until the Secret was created, then
// SecretUpdated), syncHash and lastSuccessfulSyncTime when the Secret took
// new content. An unchanged poll writes nothing.
func (c *Controller) setStatus(ctx context.Context, ss *ssv1.SecretSync, o outcome) error {
	next := ss.Status.DeepCopy()
	gen := ss.Generation
	set := func(typ string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&next.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen})
	}
	createdBefore := meta.IsStatusConditionTrue(ss.Status.Conditions, ssv1.ConditionCreated)
	switch {
	case o.ok:
		if o.created || !createdBefore {
			set(ssv1.ConditionCreated, metav1.ConditionTrue, ssv1.ReasonCreateSuccessful, ssv1.MessageCreateSuccessful)
		}
		set(ssv1.ConditionUpdated, metav1.ConditionTrue, ssv1.ReasonSecretUpToDate, ssv1.MessageUpToDate)
		if o.written || next.SyncHash != o.hash {
			now := metav1.NewTime(c.cfg.Now())
			next.LastSuccessfulSyncTime = &now
		}
		next.SyncHash = o.hash
	case createdBefore:
		set(ssv1.ConditionUpdated, metav1.ConditionFalse, o.reason, o.msg)
	default:
		set(ssv1.ConditionCreated, metav1.ConditionFalse, o.reason, o.msg)
		if meta.FindStatusCondition(next.Conditions, ssv1.ConditionUpdated) == nil {
			set(ssv1.ConditionUpdated, metav1.ConditionUnknown, ssv1.ReasonNoUpdatesAttemptedYet, "The Secret has not been created yet.")
		}
	}
	if reflect.DeepEqual(*next, ss.Status) {
		return nil
	}
	updated := ss.DeepCopy()
	updated.Status = *next
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(updated)
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{Object: obj}
	u.SetAPIVersion(ssv1.APIVersion)
	u.SetKind(ssv1.Kind)
	c.cfg.Metrics.statusWrite()
	_, err = c.kube.Dynamic.Resource(ssv1.Resource).Namespace(ss.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{FieldManager: ssv1.FieldManager})
	return err
}
