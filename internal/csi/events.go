package csi

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

var eventsGVR = schema.GroupVersionResource{Version: "v1", Resource: "events"}

const (
	eventNormal  = corev1.EventTypeNormal
	eventWarning = corev1.EventTypeWarning
)

// event records an Event on the pod, as kubelet does for volume errors, so
// that `kubectl describe pod` shows the provider's explanation. Messages
// come from providers' and our own errors, which never hold secret bytes.
func (d *Driver) event(ctx context.Context, pod podRef, typ, reason, msg string) {
	if len(msg) > 1024 {
		msg = msg[:1021] + "..."
	}
	now := metav1.NewTime(d.cfg.Now())
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", pod.name, time.Now().UnixNano()), Namespace: pod.namespace},
		InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Name: pod.name, Namespace: pod.namespace, UID: types.UID(pod.uid)},
		Reason:         reason, Message: msg, Type: typ,
		Source:         corev1.EventSource{Component: "secrets-store-csi-driver", Host: d.cfg.NodeID},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: "secrets-store.csi.k8s.io", ReportingInstance: d.cfg.NodeID,
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	ev.APIVersion, ev.Kind = "v1", "Event"
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ev)
	if err == nil {
		_, err = d.cfg.Dynamic.Resource(eventsGVR).Namespace(pod.namespace).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
	}
	if err != nil {
		d.cfg.Logger.Warn("event not recorded", "pod", pod.namespace+"/"+pod.name, "reason", reason, "err", err)
	}
}
