package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	spcv1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	"kvmount.dev/kvmount/internal/refresh"
)

func TestRequestRefresh(t *testing.T) {
	spc := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
		"metadata": map[string]any{"name": "db", "namespace": "app"}}}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{spcv1.SecretProviderClassResource: "SecretProviderClassList"}, spc)
	var out bytes.Buffer
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	if err := requestRefresh(context.Background(), dyn, spcv1.SecretProviderClassResource, "app", "db", now, &out); err != nil {
		t.Fatal(err)
	}
	got, _ := dyn.Resource(spcv1.SecretProviderClassResource).Namespace("app").Get(context.Background(), "db", metav1.GetOptions{})
	if got.GetAnnotations()[refresh.RequestAnnotation] != "2026-12-07T10:00:00Z" || !strings.Contains(out.String(), "refresh requested") {
		t.Fatalf("annotations %v, output %q", got.GetAnnotations(), out.String())
	}
	err := requestRefresh(context.Background(), dyn, spcv1.SecretProviderClassResource, "app", "missing", now, &out)
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("a missing class: %v", err)
	}
	dyn.PrependReactor("patch", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(spcv1.SecretProviderClassResource.GroupResource(), "db", errors.New("no"))
	})
	err = requestRefresh(context.Background(), dyn, spcv1.SecretProviderClassResource, "app", "db", now, &out)
	if err == nil || !strings.Contains(err.Error(), "needs the patch verb") {
		t.Fatalf("forbidden: %v", err)
	}
	if err := runRefresh(context.Background(), []string{"pod/x"}, &out); !errors.Is(err, errUsage) {
		t.Fatalf("an unknown kind: %v", err)
	}
}
