package syncer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	ssv1 "kvmount.dev/kvmount/internal/apis/secretsync/v1alpha1"
	"kvmount.dev/kvmount/internal/tlssecret"
)

// secretData maps the provider's files to the Secret's keys. missing lists
// the data entries whose file did not come; for kubernetes.io/tls, tls.crt
// and tls.key are taken out of a PEM or PKCS#12 file.
func secretData(ss *ssv1.SecretSync, files map[string][]byte) (data map[string][]byte, missing []string, err error) {
	data = map[string][]byte{}
	tls := secretType(ss) == corev1.SecretTypeTLS
	for _, d := range ss.Spec.SecretObject.Data {
		content, ok := files[d.SourcePath]
		if !ok {
			missing = append(missing, d.SourcePath)
			continue
		}
		if tls && (d.TargetKey == corev1.TLSCertKey || d.TargetKey == corev1.TLSPrivateKeyKey) {
			if content, err = tlssecret.Part(content, d.TargetKey); err != nil {
				return nil, nil, &dataError{fmt.Sprintf("%s from %s: %v", d.TargetKey, d.SourcePath, err)}
			}
		}
		data[d.TargetKey] = content
	}
	return data, missing, nil
}

// dataError is a file that cannot become the Secret's key.
type dataError struct{ msg string }

func (e *dataError) Error() string { return e.msg }

func secretType(ss *ssv1.SecretSync) corev1.SecretType {
	if ss.Spec.SecretObject.Type == "" {
		return corev1.SecretTypeOpaque
	}
	return corev1.SecretType(ss.Spec.SecretObject.Type)
}

// desired is the Secret the SecretSync asks for: its name and namespace,
// type, data, labels (with the controller's label), annotations, and one
// controller reference to the SecretSync, so that the garbage collector
// deletes it with the SecretSync.
func desired(ss *ssv1.SecretSync, data map[string][]byte) *corev1.Secret {
	labels := maps.Clone(ss.Spec.SecretObject.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[ssv1.ManagedLabel] = ""
	yes := true
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: ss.Name, Namespace: ss.Namespace, Labels: labels, Annotations: maps.Clone(ss.Spec.SecretObject.Annotations),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: ssv1.APIVersion, Kind: ssv1.Kind, Name: ss.Name, UID: ss.UID, Controller: &yes}}},
		Type: secretType(ss),
		Data: data,
	}
}

// foreignError is a Secret of the SecretSync's name that is not its own.
type foreignError struct {
	ns, name, why string
}

func (e *foreignError) Error() string {
	return fmt.Sprintf("Secret %s/%s exists and %s: the controller never takes over a Secret it did not create; delete that Secret (the controller then creates its own) or give the SecretSync another name", e.ns, e.name, e.why)
}

// owned checks that actual is the SecretSync's own Secret: its controller
// reference names this SecretSync (this UID) and it has the label.
func owned(ss *ssv1.SecretSync, actual *corev1.Secret) error {
	return ownedBy(desired(ss, nil), actual)
}

// ownedBy checks that actual has want's controller reference and label.
func ownedBy(want, actual *corev1.Secret) error {
	ref, mine := metav1.GetControllerOf(actual), metav1.GetControllerOf(want)
	switch {
	case ref == nil || ref.Kind != mine.Kind || ref.APIVersion != mine.APIVersion || ref.Name != mine.Name:
		return &foreignError{want.Namespace, want.Name, "is not this SecretSync's (it has no controller reference to it)"}
	case ref.UID != mine.UID:
		return &foreignError{want.Namespace, want.Name, "belongs to an earlier SecretSync of this name (the garbage collector deletes it soon; the new one is then created)"}
	}
	if _, ok := actual.Labels[ssv1.ManagedLabel]; !ok {
		return &foreignError{want.Namespace, want.Name, "lacks the label " + ssv1.ManagedLabel}
	}
	return nil
}

// differs names what actual lacks of want (keys whose values differ, a
// label, an annotation, the type); empty when actual is up to date.
func differs(want, actual *corev1.Secret) []string {
	var out []string
	if actual.Type != want.Type {
		out = append(out, "type")
	}
	for _, k := range slices.Sorted(maps.Keys(want.Data)) {
		if !bytes.Equal(actual.Data[k], want.Data[k]) {
			out = append(out, "data "+k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(applied(actual, "data"))) {
		if _, ok := want.Data[k]; !ok {
			out = append(out, "data "+k+" (no longer synced)")
		}
	}
	for _, m := range []struct {
		what      string
		want, got map[string]string
	}{{"label", want.Labels, actual.Labels}, {"annotation", want.Annotations, actual.Annotations}} {
		for _, k := range slices.Sorted(maps.Keys(m.want)) {
			if v, ok := m.got[k]; !ok || v != m.want[k] {
				out = append(out, m.what+" "+k)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(applied(actual, m.what+"s"))) {
			if _, ok := m.want[k]; !ok {
				out = append(out, m.what+" "+k+" (no longer synced)")
			}
		}
	}
	return out
}

// applied is the set of keys of a map field (data, labels, annotations)
// that this controller's field manager owns in actual: a key it owns but
// no longer wants is removed by its next apply.
func applied(actual *corev1.Secret, field string) map[string]bool {
	out := map[string]bool{}
	for _, mf := range actual.ManagedFields {
		if mf.Manager != ssv1.FieldManager || mf.FieldsV1 == nil {
			continue
		}
		var fields map[string]any
		if json.Unmarshal(mf.FieldsV1.Raw, &fields) != nil {
			continue
		}
		sub := fields
		if field != "data" {
			sub, _ = fields["f:metadata"].(map[string]any)
		}
		for k := range asMap(sub["f:"+field]) {
			if name, ok := strings.CutPrefix(k, "f:"); ok {
				out[name] = true
			}
		}
	}
	return out
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// digestOf summarises what the controller writes of a Secret (type, data,
// labels, annotations, owner), to recognise its own writes in the watch.
// It stays in memory: it is never written anywhere.
func digestOf(s *corev1.Secret) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", s.Type)
	for _, k := range slices.Sorted(maps.Keys(s.Data)) {
		fmt.Fprintf(h, "d %q %x\n", k, sha256.Sum256(s.Data[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		fmt.Fprintf(h, "l %q %q\n", k, s.Labels[k])
	}
	for _, k := range slices.Sorted(maps.Keys(s.Annotations)) {
		fmt.Fprintf(h, "a %q %q\n", k, s.Annotations[k])
	}
	for _, r := range s.OwnerReferences {
		fmt.Fprintf(h, "o %s\n", r.UID)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// write creates the Secret, or applies want over actual (server-side
// apply, the controller's field manager, forced: what it owns is its
// own), conditioned on actual's resource version, so that a Secret
// replaced since it was checked is never written.
func (c *Controller) write(ctx context.Context, want, actual *corev1.Secret) (*corev1.Secret, error) {
	secrets := c.kube.Core.Secrets(want.Namespace)
	if actual == nil {
		created, err := secrets.Create(ctx, want, metav1.CreateOptions{FieldManager: ssv1.FieldManager})
		if err == nil {
			c.cfg.Metrics.secretWrite("create")
		}
		if apierrors.IsAlreadyExists(err) {
			// Not in the cache, which holds only the controller's
			// Secrets: someone else's, unless the cache lags.
			if cur, gerr := secrets.Get(ctx, want.Name, metav1.GetOptions{}); gerr == nil {
				if ferr := ownedBy(want, cur); ferr != nil {
					return nil, ferr
				}
			}
		}
		return created, err
	}
	apply := want.DeepCopy()
	apply.ResourceVersion = actual.ResourceVersion
	body, err := json.Marshal(apply)
	if err != nil {
		return nil, err
	}
	yes := true
	out, err := secrets.Patch(ctx, want.Name, types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: ssv1.FieldManager, Force: &yes})
	if err == nil {
		c.cfg.Metrics.secretWrite("apply")
	}
	return out, err
}
