package csi

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	v1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
)

// Classes reads SecretProviderClasses from a cache fed by one watch, as
// upstream does, so that a storm of pods costs no API request per pod: a
// node's driver lists and watches the classes once. A class not (yet) in
// the cache — created a moment before the pod — is read from the API
// server, so a new class never fails a mount.
type Classes struct {
	dyn      dynamic.Interface
	informer cache.SharedIndexInformer
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

// Run keeps the cache until ctx ends; it returns once the first list is in.
func (c *Classes) Run(ctx context.Context) error {
	if c.informer == nil {
		return nil
	}
	go c.informer.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), c.informer.HasSynced) {
		return fmt.Errorf("list SecretProviderClasses: %w", ctx.Err())
	}
	return nil
}

// errClassNotFound is a class that exists neither in the cache nor in the
// API server.
var errClassNotFound = errors.New("SecretProviderClass not found")

// Get returns class name of namespace ns.
func (c *Classes) Get(ctx context.Context, ns, name string) (*v1.SecretProviderClass, error) {
	if c.informer != nil && c.informer.HasSynced() {
		if obj, ok, err := c.informer.GetStore().GetByKey(ns + "/" + name); err == nil && ok {
			return decodeClass(obj.(*unstructured.Unstructured))
		}
	}
	u, err := c.dyn.Resource(v1.SecretProviderClassResource).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, errClassNotFound
	}
	if err != nil {
		return nil, &apiError{what: fmt.Sprintf("read SecretProviderClass %s/%s", ns, name), err: err}
	}
	return decodeClass(u)
}

func decodeClass(u *unstructured.Unstructured) (*v1.SecretProviderClass, error) {
	var spc v1.SecretProviderClass
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &spc); err != nil {
		return nil, &classError{msg: fmt.Sprintf("SecretProviderClass %s/%s is malformed: %v", u.GetNamespace(), u.GetName(), err)}
	}
	return &spc, nil
}
