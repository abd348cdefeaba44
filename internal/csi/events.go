package csi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"kvmount.dev/kvmount/internal/lru"
)

var eventsGVR = schema.GroupVersionResource{Version: "v1", Resource: "events"}

const (
	eventNormal  = corev1.EventTypeNormal
	eventWarning = corev1.EventTypeWarning
)

// events records Events on pods, as kubelet does for volume errors, so that
// `kubectl describe pod` shows the provider's explanation. A failure that
// repeats (kubelet retries a failing mount every few seconds, then every
// two minutes) updates one Event's count and last time instead of creating
// a new Event each time. Messages come from providers' and our own errors,
// which never hold secret bytes.
type events struct {
	dyn  dynamic.Interface
	node string
	now  func() time.Time
	log  *slog.Logger
	// seen maps (pod, type, reason, message) to the Event recorded for it.
	seen *lru.Cache[string, *seenEvent]
	seq  atomic.Uint64
}

type seenEvent struct {
	name  string
	count atomic.Int32
}

func newEvents(dyn dynamic.Interface, node string, now func() time.Time, log *slog.Logger) *events {
	return &events{dyn: dyn, node: node, now: now, log: log, seen: lru.New[string, *seenEvent](4096, time.Hour, now)}
}

// maxEventMessage is the API server's limit on an Event's message.
const maxEventMessage = 1024

// record creates the pod's Event, or counts one more of the same.
func (e *events) record(ctx context.Context, pod podRef, typ, reason, msg string) {
	if len(msg) > maxEventMessage {
		msg = msg[:maxEventMessage-3] + "..."
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	sum := sha256.Sum256([]byte(pod.uid + "\x00" + typ + "\x00" + reason + "\x00" + msg))
	key := hex.EncodeToString(sum[:12])
	var err error
	if prev, ok := e.seen.Get(key); ok {
		if err = e.bump(ctx, pod, prev); err == nil {
			return
		}
	}
	// kubelet's naming: the pod, a dot, a unique hex suffix.
	name := fmt.Sprintf("%s.%x", pod.name, uint64(time.Now().UnixNano())+e.seq.Add(1))
	if err = e.create(ctx, pod, name, typ, reason, msg); err == nil {
		_, _ = e.seen.GetOrAdd(key, func() (*seenEvent, error) {
			se := &seenEvent{name: name}
			se.count.Store(1)
			return se, nil
		})
		return
	}
	e.log.Warn("event not recorded", "pod", pod.namespace+"/"+pod.name, "reason", reason, "err", err)
}

func (e *events) create(ctx context.Context, pod podRef, name, typ, reason, msg string) error {
	now := metav1.NewTime(e.now())
	ev := &corev1.Event{
		TypeMeta:       metav1.TypeMeta{APIVersion: "v1", Kind: "Event"},
		ObjectMeta:     metav1.ObjectMeta{Name: name, Namespace: pod.namespace},
		InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Name: pod.name, Namespace: pod.namespace, UID: types.UID(pod.uid)},
		Reason:         reason, Message: msg, Type: typ,
		Source:         corev1.EventSource{Component: "secrets-store-csi-driver", Host: e.node},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: DriverName, ReportingInstance: e.node,
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ev)
	if err != nil {
		return err
	}
	_, err = e.dyn.Resource(eventsGVR).Namespace(pod.namespace).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
	return err
}

// bump adds one to a recorded Event's count (a merge patch: one request).
func (e *events) bump(ctx context.Context, pod podRef, prev *seenEvent) error {
	patch := fmt.Sprintf(`{"count":%d,"lastTimestamp":%q}`, prev.count.Add(1), e.now().UTC().Format(time.RFC3339))
	_, err := e.dyn.Resource(eventsGVR).Namespace(pod.namespace).Patch(ctx, prev.name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}
