package tokenproxy

import (
	"context"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

var (
	tokenReviews = schema.GroupVersionResource{Group: "authentication.k8s.io", Version: "v1", Resource: "tokenreviews"}
	accessReview = schema.GroupVersionResource{Group: "authorization.k8s.io", Version: "v1", Resource: "subjectaccessreviews"}
)

// KubeReviewer asks a cluster's API server, as AKS's proxy asks its
// cluster's.
type KubeReviewer struct {
	// Client is the cluster's API; called per review, so that a cluster
	// azsim learns of later is reached.
	Client func() (dynamic.Interface, error)
}

// ReviewToken sends a TokenReview; only service accounts pass.
func (k KubeReviewer) ReviewToken(ctx context.Context, token, audience string) (string, []string, error) {
	kube, err := k.Client()
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	review := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
		"spec": map[string]any{"token": token, "audiences": []any{audience}}}}
	out, err := kube.Resource(tokenReviews).Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return "", nil, fmt.Errorf("token review: %w", err)
	}
	if ok, _, _ := unstructured.NestedBool(out.Object, "status", "authenticated"); !ok {
		msg, _, _ := unstructured.NestedString(out.Object, "status", "error")
		return "", nil, fmt.Errorf("the API server did not authenticate it (%s)", msg)
	}
	user, _, _ := unstructured.NestedString(out.Object, "status", "user", "username")
	groups, _, _ := unstructured.NestedStringSlice(out.Object, "status", "user", "groups")
	if !strings.HasPrefix(user, "system:serviceaccount:") {
		return "", nil, fmt.Errorf("it belongs to %s, not a service account", user)
	}
	return user, groups, nil
}

// Allowed sends a SubjectAccessReview.
func (k KubeReviewer) Allowed(ctx context.Context, user string, groups []string, verb, group, resource string) (bool, error) {
	kube, err := k.Client()
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	gs := make([]any, len(groups))
	for i, g := range groups {
		gs[i] = g
	}
	sar := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
		"spec": map[string]any{"user": user, "groups": gs,
			"resourceAttributes": map[string]any{"verb": verb, "group": group, "resource": resource}}}}
	out, err := kube.Resource(accessReview).Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("access review: %w", err)
	}
	ok, _, _ := unstructured.NestedBool(out.Object, "status", "allowed")
	return ok, nil
}
