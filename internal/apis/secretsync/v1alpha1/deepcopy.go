package v1alpha1

import (
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/runtime"
)

// DeepCopy copies the status.
func (s *SecretSyncStatus) DeepCopy() *SecretSyncStatus {
	out := *s
	if s.LastSuccessfulSyncTime != nil {
		t := *s.LastSuccessfulSyncTime
		out.LastSuccessfulSyncTime = &t
	}
	out.Conditions = slices.Clone(s.Conditions)
	return &out
}

// DeepCopy copies the spec.
func (s *SecretSyncSpec) DeepCopy() *SecretSyncSpec {
	out := *s
	out.SecretObject.Data = slices.Clone(s.SecretObject.Data)
	out.SecretObject.Labels = maps.Clone(s.SecretObject.Labels)
	out.SecretObject.Annotations = maps.Clone(s.SecretObject.Annotations)
	return &out
}

// DeepCopy copies the SecretSync.
func (s *SecretSync) DeepCopy() *SecretSync {
	out := &SecretSync{TypeMeta: s.TypeMeta, Spec: *s.Spec.DeepCopy(), Status: *s.Status.DeepCopy()}
	s.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return out
}

// DeepCopyObject implements runtime.Object.
func (s *SecretSync) DeepCopyObject() runtime.Object { return s.DeepCopy() }

// DeepCopyObject implements runtime.Object.
func (l *SecretSyncList) DeepCopyObject() runtime.Object {
	out := &SecretSyncList{TypeMeta: l.TypeMeta}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	for i := range l.Items {
		out.Items = append(out.Items, *l.Items[i].DeepCopy())
	}
	return out
}
