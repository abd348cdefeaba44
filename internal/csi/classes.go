package csi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	v1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	"kvmount.dev/kvmount/internal/refresh"
)

// Classes reads SecretProviderClasses from a cache fed by one watch, as
// upstream does, so that a storm of pods costs no API request per pod: a
// node's driver lists and watches the classes once. A class not (yet) in
// the cache — created a moment before the pod — is read from the API
// server, so a new class never fails a mount.
//
// The cache fills in the background: the driver serves kubelet at once,
// also while the API server is unreachable or the CRD is not installed, so
// that pods can always be unmounted and /healthz answers. A mount that
// comes before the first list waits for it (SyncWait), then reads its class
// from the API server, and fails with a message naming what is missing.
type Classes struct {
	dyn      dynamic.Interface
	informer cache.SharedIndexInformer
	// SyncWait bounds how long a mount waits for the first list
	// (default 10 s).
	SyncWait time.Duration
}

// NewClasses returns a cache of every namespace's classes; Run fills it.
func NewClasses(dyn dynamic.Interface) *Classes {
	f := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	inf := f.ForResource(v1.SecretProviderClassResource).Informer()
	// Managed fields are most of a small object's bytes and never read.
	_ = inf.SetTransform(func(obj any) (any, error) {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			u.SetManagedFields(nil)
		}
		return obj, nil
	})
	return &Classes{dyn: dyn, informer: inf}
}

// Notify calls fn when a class's refresh annotations change: with the
// changes it lists that it did not list before (refresh.ChangedAnnotation)
// and whether a refresh was asked for (a new refresh.RequestAnnotation
// value). Call it before Start. A class whose list cannot be read is
// skipped with a log line: the annotation is the sync controller's, and the
// poll still refreshes its volumes.
func (c *Classes) Notify(logger *slog.Logger, fn func(ns, name string, changes []refresh.Change, requested bool)) {
	if c.informer == nil {
		return
	}
	_, _ = c.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{UpdateFunc: func(old, cur any) {
		o, ok1 := old.(*unstructured.Unstructured)
		n, ok2 := cur.(*unstructured.Unstructured)
		if !ok1 || !ok2 {
			return
		}
		oa, na := o.GetAnnotations(), n.GetAnnotations()
		requested := na[refresh.RequestAnnotation] != "" && na[refresh.RequestAnnotation] != oa[refresh.RequestAnnotation]
		var fresh []refresh.Change
		if na[refresh.ChangedAnnotation] != oa[refresh.ChangedAnnotation] {
			was, _ := refresh.ParseChanges(oa[refresh.ChangedAnnotation])
			now, err := refresh.ParseChanges(na[refresh.ChangedAnnotation])
			if err != nil {
				logger.Warn("SecretProviderClass's change list ignored", "class", n.GetNamespace()+"/"+n.GetName(), "err", err)
			}
			fresh = refresh.New(was, now)
		}
		if requested || len(fresh) > 0 {
			fn(n.GetNamespace(), n.GetName(), fresh, requested)
		}
	}})
}

// Start fills and keeps the cache in the background until ctx ends.
func (c *Classes) Start(ctx context.Context) {
	if c.informer != nil {
		go c.informer.Run(ctx.Done())
	}
}

// Synced reports whether the first list is in.
func (c *Classes) Synced() bool { return c.informer != nil && c.informer.HasSynced() }

// errClassNotFound is a class that exists neither in the cache nor in the
// API server.
var errClassNotFound = errors.New("SecretProviderClass not found")

// readTimeout bounds a class read from the API server.
const readTimeout = 10 * time.Second

// Get returns class name of namespace ns.
func (c *Classes) Get(ctx context.Context, ns, name string) (*v1.SecretProviderClass, error) {
	if c.informer != nil && c.waitSynced(ctx) {
		if obj, ok, err := c.informer.GetStore().GetByKey(ns + "/" + name); err == nil && ok {
			return decodeClass(obj.(*unstructured.Unstructured))
		}
	}
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	u, err := c.dyn.Resource(v1.SecretProviderClassResource).Namespace(ns).Get(rctx, name, metav1.GetOptions{})
	switch {
	case crdMissing(err):
		return nil, &apiError{what: fmt.Sprintf("read SecretProviderClass %s/%s: the API server does not serve %s (the CRD is not installed: install the chart, or kubectl apply -f deploy/crds/)", ns, name, v1.SecretProviderClassResource.GroupResource()), err: err}
	case apierrors.IsNotFound(err):
		return nil, errClassNotFound
	case err != nil && !c.Synced():
		return nil, &apiError{what: fmt.Sprintf("read SecretProviderClass %s/%s (the driver has not listed the classes yet)", ns, name), err: err}
	case err != nil:
		return nil, &apiError{what: fmt.Sprintf("read SecretProviderClass %s/%s", ns, name), err: err}
	}
	return decodeClass(u)
}

// waitSynced waits, at most SyncWait, for the first list.
func (c *Classes) waitSynced(ctx context.Context) bool {
	if c.informer.HasSynced() {
		return true
	}
	wait := c.SyncWait
	if wait == 0 {
		wait = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	return cache.WaitForCacheSync(ctx.Done(), c.informer.HasSynced)
}

// crdMissing reports a 404 for the resource itself rather than for one
// object: the API server's Status then names no object.
func crdMissing(err error) bool {
	var st apierrors.APIStatus
	if !apierrors.IsNotFound(err) || !errors.As(err, &st) {
		return false
	}
	d := st.Status().Details
	return d == nil || d.Name == ""
}

func decodeClass(u *unstructured.Unstructured) (*v1.SecretProviderClass, error) {
	var spc v1.SecretProviderClass
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &spc); err != nil {
		return nil, &classError{msg: fmt.Sprintf("SecretProviderClass %s/%s is malformed: %v", u.GetNamespace(), u.GetName(), err)}
	}
	return &spc, nil
}
