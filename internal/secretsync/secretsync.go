// Package secretsync keeps the Kubernetes Secrets a SecretProviderClass's
// secretObjects describe in step with a pod's mounted files. Each pod that
// mounts the class adds itself as an owner of the Secret, and owners are
// merged, never replaced, so the Secret lives exactly while some pod on any
// node uses it: the garbage collector removes a deleted pod's reference and
// deletes the Secret with its last owner. (Upstream v1.6.0 replaced owner
// references on every update, and Secrets were deleted mid-rollout.)
// Writes happen only when something changed.
package secretsync

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"

	v1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	"kvmount.dev/kvmount/internal/tlssecret"
)

// ManagedLabel marks Secrets the driver created, as upstream does.
const ManagedLabel = "secrets-store.csi.k8s.io/managed"

// ClassAnnotation names the SecretProviderClass whose secretObjects created
// a managed Secret: that class alone writes it. Upstream lets any class of
// the namespace overwrite a Secret another class syncs, so one team's
// class could replace another's data; kvmount refuses (OwnedByOtherClass).
// A managed Secret without the annotation (synced before kvmount recorded
// it) belongs to the first class that syncs it after the upgrade.
const ClassAnnotation = "secrets-store.kvmount.dev/secret-provider-class"

// NotManagedError is a Secret of the same name that the driver did not
// create. The driver never takes one over: it would overwrite its data and
// make it pod-owned, so deleted with the pod — a way for anyone who may
// create pods and classes, but not write Secrets, to overwrite or delete
// any Secret of the namespace.
type NotManagedError struct {
	Namespace, Name string
}

func (e *NotManagedError) Error() string {
	return fmt.Sprintf("Secret %s/%s exists and was not created by the Secrets Store CSI driver (it lacks the label %s=true), so it is left alone: choose another secretName, or delete that Secret and let the driver create it", e.Namespace, e.Name, ManagedLabel)
}

// OwnedByOtherClassError is a managed Secret that another
// SecretProviderClass of the namespace syncs.
type OwnedByOtherClassError struct {
	Namespace, Name, Owner, Class string
}

func (e *OwnedByOtherClassError) Error() string {
	return fmt.Sprintf("Secret %s/%s is synced by SecretProviderClass %s (annotation %s), so class %s may not write it: give one of the two classes another secretName", e.Namespace, e.Name, e.Owner, ClassAnnotation, e.Class)
}

// Owner is the pod a Secret is synced for, and the class it mounts.
type Owner struct {
	Namespace, Name string
	UID             types.UID
	// Class is the SecretProviderClass whose secretObjects are synced.
	Class string
}

// Sync creates or updates each secretObject's Secret from files (mounted
// path → contents). It returns the names of Secrets it wrote.
func Sync(ctx context.Context, kube dynamic.Interface, owner Owner, objs []*v1.SecretObject, files map[string][]byte) ([]string, error) {
	var written []string
	var errs []error
	for i, so := range objs {
		want, err := build(i, so, owner, files)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		changed, err := apply(ctx, kube, want, owner)
		if err != nil {
			errs = append(errs, fmt.Errorf("secretObjects[%d] Secret %s/%s: %w", i, owner.Namespace, so.SecretName, err))
			continue
		}
		if changed {
			written = append(written, so.SecretName)
		}
	}
	return written, errors.Join(errs...)
}

// build makes the Secret a secretObject describes.
func build(i int, so *v1.SecretObject, owner Owner, files map[string][]byte) (*corev1.Secret, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("secretObjects[%d] (%s): %s", i, so.SecretName, fmt.Sprintf(format, args...))
	}
	if errs := validation.IsDNS1123Subdomain(so.SecretName); len(errs) > 0 {
		return nil, bad("secretName is not a valid Secret name: %s", strings.Join(errs, "; "))
	}
	typ := corev1.SecretType(so.Type)
	if typ == "" {
		typ = corev1.SecretTypeOpaque
	}
	if len(so.Data) == 0 {
		return nil, bad("data is empty: list objectName/key pairs")
	}
	data := map[string][]byte{}
	for _, d := range so.Data {
		if d == nil || d.Key == "" {
			return nil, bad("a data entry has no key")
		}
		content, ok := files[d.ObjectName]
		if !ok {
			return nil, bad("objectName %q is not a mounted file (it must be the file name: the object's alias or name)", d.ObjectName)
		}
		if typ == corev1.SecretTypeTLS && (d.Key == corev1.TLSCertKey || d.Key == corev1.TLSPrivateKeyKey) {
			part, err := tlssecret.Part(content, d.Key)
			if err != nil {
				return nil, bad("%s from %q: %v", d.Key, d.ObjectName, err)
			}
			content = part
		}
		data[d.Key] = content
	}
	labels := maps.Clone(so.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[ManagedLabel] = "true"
	annotations := maps.Clone(so.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[ClassAnnotation] = owner.Class
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: so.SecretName, Namespace: owner.Namespace, Labels: labels, Annotations: annotations,
			OwnerReferences: []metav1.OwnerReference{ownerRef(owner)}},
		Type: typ, Data: data,
	}, nil
}

func ownerRef(o Owner) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: o.Name, UID: o.UID}
}

// apply creates the Secret, or merges it into the existing one (owners
// added, data, labels and annotations set), writing only on change.
// secretsGVR is reached through the dynamic client: the typed clientset
// would register every API group's types and cost the driver megabytes.
var secretsGVR = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

func apply(ctx context.Context, kube dynamic.Interface, want *corev1.Secret, owner Owner) (bool, error) {
	secrets := typedSecrets{kube.Resource(secretsGVR).Namespace(owner.Namespace)}
	for attempt := 0; ; attempt++ {
		cur, err := secrets.Get(ctx, want.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = secrets.Create(ctx, want, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) && attempt < 3 {
				continue
			}
			return err == nil, err
		}
		if err != nil {
			return false, err
		}
		if cur.Labels[ManagedLabel] != "true" {
			return false, &NotManagedError{Namespace: cur.Namespace, Name: cur.Name}
		}
		if by := cur.Annotations[ClassAnnotation]; by != "" && by != owner.Class {
			return false, &OwnedByOtherClassError{Namespace: cur.Namespace, Name: cur.Name, Owner: by, Class: owner.Class}
		}
		if cur.Type != want.Type {
			return false, fmt.Errorf("exists with type %s, the class asks for %s; Secret types cannot change: delete it", cur.Type, want.Type)
		}
		next, changed := merge(cur, want, owner)
		if !changed {
			return false, nil
		}
		_, err = secrets.Update(ctx, next, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) && attempt < 3 {
			continue
		}
		return err == nil, err
	}
}

// merge returns cur updated towards want, and whether anything changed.
func merge(cur, want *corev1.Secret, owner Owner) (*corev1.Secret, bool) {
	next := cur.DeepCopy()
	changed := false
	if !slices.ContainsFunc(next.OwnerReferences, func(r metav1.OwnerReference) bool { return r.UID == owner.UID }) {
		next.OwnerReferences = append(next.OwnerReferences, ownerRef(owner))
		changed = true
	}
	if !maps.EqualFunc(next.Data, want.Data, func(a, b []byte) bool { return string(a) == string(b) }) {
		next.Data, changed = want.Data, true
	}
	for _, m := range []struct {
		dst *map[string]string
		src map[string]string
	}{{&next.Labels, want.Labels}, {&next.Annotations, want.Annotations}} {
		for k, v := range m.src {
			if (*m.dst)[k] != v {
				if *m.dst == nil {
					*m.dst = map[string]string{}
				}
				(*m.dst)[k], changed = v, true
			}
		}
	}
	return next, changed
}

// typedSecrets is the Secret calls apply needs, over the dynamic client.
type typedSecrets struct{ ri dynamic.ResourceInterface }

func (t typedSecrets) Get(ctx context.Context, name string, o metav1.GetOptions) (*corev1.Secret, error) {
	u, err := t.ri.Get(ctx, name, o)
	if err != nil {
		return nil, err
	}
	var s corev1.Secret
	return &s, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &s)
}

func (t typedSecrets) Create(ctx context.Context, s *corev1.Secret, o metav1.CreateOptions) (*corev1.Secret, error) {
	u, err := toUnstructured(s)
	if err != nil {
		return nil, err
	}
	_, err = t.ri.Create(ctx, u, o)
	return s, err
}

func (t typedSecrets) Update(ctx context.Context, s *corev1.Secret, o metav1.UpdateOptions) (*corev1.Secret, error) {
	u, err := toUnstructured(s)
	if err != nil {
		return nil, err
	}
	_, err = t.ri.Update(ctx, u, o)
	return s, err
}

func toUnstructured(s *corev1.Secret) (*unstructured.Unstructured, error) {
	s.APIVersion, s.Kind = "v1", "Secret"
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(s)
	return &unstructured.Unstructured{Object: obj}, err
}
