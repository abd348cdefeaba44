package csi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	v1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
)

// statusName is the SecretProviderClassPodStatus name upstream uses,
// <pod>-<namespace>-<class>; a name longer than an object name may be is
// cut and given a hash suffix (upstream fails on such pods).
func statusName(m mountRequest) string {
	name := m.pod.name + "-" + m.pod.namespace + "-" + m.class
	if len(name) <= 253 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:253-17] + "-" + hex.EncodeToString(sum[:8])
}

func podUID(m mountRequest) types.UID { return types.UID(m.pod.uid) }

// writeStatus creates or updates the pod's SecretProviderClassPodStatus:
// owned by the pod (so it goes with it), labelled with the node, holding
// the mounted object versions sorted by ID. rv is the resource version of
// this driver's last write of it ("" for none); the new one is returned.
func (d *Driver) writeStatus(ctx context.Context, m mountRequest, versions map[string]string, rv string) (string, error) {
	st := v1.SecretProviderClassPodStatus{
		TypeMeta: metav1.TypeMeta{APIVersion: v1.Group + "/" + v1.Version, Kind: "SecretProviderClassPodStatus"},
		ObjectMeta: metav1.ObjectMeta{Name: statusName(m), Namespace: m.pod.namespace,
			Labels:          map[string]string{v1.InternalNodeLabel: d.cfg.NodeID},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: m.pod.name, UID: podUID(m)}}},
		Status: v1.SecretProviderClassPodStatusStatus{PodName: m.pod.name, SecretProviderClassName: m.class, Mounted: true, TargetPath: m.target},
	}
	for id, ver := range versions {
		st.Status.Objects = append(st.Status.Objects, v1.SecretProviderClassObject{ID: id, Version: ver})
	}
	sort.Slice(st.Status.Objects, func(i, j int) bool { return st.Status.Objects[i].ID < st.Status.Objects[j].ID })
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&st)
	if err != nil {
		return "", err
	}
	ri := d.cfg.Dynamic.Resource(v1.SecretProviderClassPodStatusResource).Namespace(m.pod.namespace)
	// One request per write in the common case: a first mount creates the
	// object; a rotation updates it at the resource version this driver's
	// last write returned. Only when that fails (the driver restarted, or
	// someone else changed it) is it read first.
	next := &unstructured.Unstructured{Object: obj}
	if rv != "" {
		next.SetResourceVersion(rv)
		out, err := ri.Update(ctx, next, metav1.UpdateOptions{})
		if err == nil {
			return out.GetResourceVersion(), nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return "", err
		}
		next.SetResourceVersion("")
	}
	out, err := ri.Create(ctx, next, metav1.CreateOptions{})
	if err == nil {
		return out.GetResourceVersion(), nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	cur, err := ri.Get(ctx, st.Name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	next.SetResourceVersion(cur.GetResourceVersion())
	if out, err = ri.Update(ctx, next, metav1.UpdateOptions{}); err != nil {
		return "", err
	}
	return out.GetResourceVersion(), nil
}
