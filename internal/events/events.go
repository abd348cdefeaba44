// Package events records Kubernetes Events on pods, as kubelet does for
// volume errors, so that `kubectl describe pod` shows what went wrong and
// how to fix it. An Event that repeats (kubelet retries a failing mount
// every few seconds, then every two minutes) updates one Event's count and
// last time instead of creating a new Event each time. Messages come from
// the driver's and providers' errors, which never hold secret bytes.
package events

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"kvmount.dev/kvmount/internal/lru"
)

// GVR is core/v1 events.
var GVR = schema.GroupVersionResource{Version: "v1", Resource: "events"}

// The Event types.
const (
	Normal  = corev1.EventTypeNormal
	Warning = corev1.EventTypeWarning
)

// Pod is the pod an Event is about.
type Pod struct {
	Name, Namespace, UID string
}

// Object is any object an Event is about (a SecretSync, say).
type Object struct {
	APIVersion, Kind     string
	Name, Namespace, UID string
}

func (p Pod) object() Object {
	return Object{APIVersion: "v1", Kind: "Pod", Name: p.Name, Namespace: p.Namespace, UID: p.UID}
}

// Recorder records Events as one component on one node.
type Recorder struct {
	dyn                 dynamic.Interface
	component, instance string
	now                 func() time.Time
	log                 *slog.Logger
	// seen maps (pod, type, reason, message) to the Event recorded for it.
	seen *lru.Cache[string, *seenEvent]
	seq  atomic.Uint64
}

type seenEvent struct {
	name  string
	count atomic.Int32
}

// Config says who records.
type Config struct {
	// Dynamic reaches the API server; nil records nothing.
	Dynamic dynamic.Interface
	// Component is the Event's source and reporting controller; Instance
	// the node.
	Component, Instance string
	Now                 func() time.Time
	Logger              *slog.Logger
}

// New returns a Recorder.
func New(cfg Config) *Recorder {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Recorder{dyn: cfg.Dynamic, component: cfg.Component, instance: cfg.Instance, now: cfg.Now, log: cfg.Logger,
		seen: lru.New[string, *seenEvent](4096, time.Hour, cfg.Now)}
}

// maxMessage is the API server's limit on an Event's message.
const maxMessage = 1024

// truncate cuts msg to at most n bytes, ending in "..." when cut, at a
// rune boundary: an object alias may be any UTF-8, and half a rune would
// reach the API server as a replacement character.
func truncate(msg string, n int) string {
	if len(msg) <= n {
		return msg
	}
	cut := n - 3
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + "..."
}

// Record creates the pod's Event, or counts one more of the same. A
// failure to record is logged, never returned: Events are for people.
func (r *Recorder) Record(ctx context.Context, pod Pod, typ, reason, msg string) {
	r.RecordObject(ctx, pod.object(), typ, reason, msg)
}

// RecordObject is Record for any object.
func (r *Recorder) RecordObject(ctx context.Context, obj Object, typ, reason, msg string) {
	if r == nil || r.dyn == nil {
		return
	}
	msg = truncate(msg, maxMessage)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	sum := sha256.Sum256([]byte(obj.UID + "\x00" + typ + "\x00" + reason + "\x00" + msg))
	key := hex.EncodeToString(sum[:12])
	var err error
	if prev, ok := r.seen.Get(key); ok {
		err = r.bump(ctx, obj, prev)
		if apierrors.IsNotFound(err) {
			// The Event expired (the API server keeps Events an hour):
			// recreate it under its name, the count going on, as
			// client-go's recorder does; otherwise every repeat would
			// cost a failed patch and leave a new Event behind.
			err = r.create(ctx, obj, prev.name, typ, reason, msg, prev.count.Load())
		}
		if err == nil {
			return
		}
	}
	// kubelet's naming: the object, a dot, a unique hex suffix.
	name := fmt.Sprintf("%s.%x", obj.Name, uint64(time.Now().UnixNano())+r.seq.Add(1))
	if err = r.create(ctx, obj, name, typ, reason, msg, 1); err == nil {
		se := &seenEvent{name: name}
		se.count.Store(1)
		r.seen.Put(key, se)
		return
	}
	r.log.Warn("event not recorded", "object", obj.Namespace+"/"+obj.Name, "reason", reason, "err", err)
}

func (r *Recorder) create(ctx context.Context, obj Object, name, typ, reason, msg string, count int32) error {
	now := metav1.NewTime(r.now())
	ev := &corev1.Event{
		TypeMeta:       metav1.TypeMeta{APIVersion: "v1", Kind: "Event"},
		ObjectMeta:     metav1.ObjectMeta{Name: name, Namespace: obj.Namespace},
		InvolvedObject: corev1.ObjectReference{APIVersion: obj.APIVersion, Kind: obj.Kind, Name: obj.Name, Namespace: obj.Namespace, UID: types.UID(obj.UID)},
		Reason:         reason, Message: msg, Type: typ,
		Source:         corev1.EventSource{Component: r.component, Host: r.instance},
		FirstTimestamp: now, LastTimestamp: now, Count: count,
		ReportingController: r.component, ReportingInstance: r.instance,
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ev)
	if err != nil {
		return err
	}
	_, err = r.dyn.Resource(GVR).Namespace(obj.Namespace).Create(ctx, &unstructured.Unstructured{Object: u}, metav1.CreateOptions{})
	return err
}

// bump adds one to a recorded Event's count (a merge patch: one request).
func (r *Recorder) bump(ctx context.Context, obj Object, prev *seenEvent) error {
	patch := fmt.Sprintf(`{"count":%d,"lastTimestamp":%q}`, prev.count.Add(1), r.now().UTC().Format(time.RFC3339))
	_, err := r.dyn.Resource(GVR).Namespace(obj.Namespace).Patch(ctx, prev.name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}
