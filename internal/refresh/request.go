package refresh

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// Ask asks for a refresh of ns/name (a SecretProviderClass or a
// SecretSync) by setting RequestAnnotation to now, and returns the value
// set. It is a patch of the object, so who may patch it may ask: the error
// of a refusal says which verb is missing.
func Ask(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, ns, name string, now time.Time) (string, error) {
	stamp := now.UTC().Format(time.RFC3339Nano)
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, RequestAnnotation, stamp)
	_, err := dyn.Resource(gvr).Namespace(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "kvmount-refresh"})
	what := gvr.Resource + " " + ns + "/" + name
	switch {
	case apierrors.IsForbidden(err):
		return "", fmt.Errorf("refresh %s: you may not patch it (%v); asking for a refresh needs the patch verb on %s in %s", what, err, gvr.GroupResource(), ns)
	case apierrors.IsNotFound(err):
		return "", fmt.Errorf("refresh %s: not found (check the name and -n)", what)
	case err != nil:
		return "", fmt.Errorf("refresh %s: %w", what, err)
	}
	return stamp, nil
}
