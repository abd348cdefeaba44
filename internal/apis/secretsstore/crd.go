// Package secretsstore generates the CustomResourceDefinitions of the
// secrets-store.csi.x-k8s.io API from its Go types (package v1): the
// OpenAPI schema is derived from the structs' JSON fields, so the YAML in
// deploy/ cannot drift from the code (a test checks it, and `make crds`
// rewrites it).
package secretsstore

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"

	"sigs.k8s.io/yaml"

	v1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	"kvmount.dev/kvmount/internal/apis/secretsstore/v1alpha1"
)

// crd describes one CRD to generate.
type crd struct {
	plural, singular, kind, description string
	// typ is the v1 type, alpha the v1alpha1 one.
	typ, alpha reflect.Type
}

var crds = []crd{
	{"secretproviderclasses", "secretproviderclass", "SecretProviderClass", "SecretProviderClass is the Schema for the secretproviderclasses API",
		reflect.TypeFor[v1.SecretProviderClass](), reflect.TypeFor[v1alpha1.SecretProviderClass]()},
	{"secretproviderclasspodstatuses", "secretproviderclasspodstatus", "SecretProviderClassPodStatus", "SecretProviderClassPodStatus is the Schema for the secretproviderclassespodstatus API",
		reflect.TypeFor[v1.SecretProviderClassPodStatus](), reflect.TypeFor[v1.SecretProviderClassPodStatus]()},
}

// CRDYAML renders both CRDs as one multi-document YAML file.
func CRDYAML() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# Generated from internal/apis/secretsstore/v1 by `make crds`; do not edit.\n")
	for _, c := range crds {
		doc, err := yaml.Marshal(c.object())
		if err != nil {
			return nil, err
		}
		b.WriteString("---\n")
		b.Write(doc)
	}
	return b.Bytes(), nil
}

// object is the CRD: v1 stored, v1alpha1 served and deprecated, as upstream.
func (c crd) object() map[string]any {
	version := func(name string, storage bool) map[string]any {
		t := c.typ
		if !storage {
			t = c.alpha
		}
		schema := schemaOf(t)
		schema["description"] = c.description
		v := map[string]any{"name": name, "served": true, "storage": storage, "schema": map[string]any{"openAPIV3Schema": schema}}
		if !storage {
			v["deprecated"] = true
		}
		return v
	}
	return map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": c.plural + "." + v1.Group},
		"spec": map[string]any{
			"group":    v1.Group,
			"names":    map[string]any{"kind": c.kind, "listKind": c.kind + "List", "plural": c.plural, "singular": c.singular},
			"scope":    "Namespaced",
			"versions": []any{version("v1", true), version("v1alpha1", false)},
		},
	}
}

// schemaOf derives an OpenAPI v3 schema from a Go type's JSON shape.
func schemaOf(t reflect.Type) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem())}
	case reflect.Struct:
		return structSchema(t)
	}
	panic(fmt.Sprintf("secretsstore: no schema for %v", t))
}

func structSchema(t reflect.Type) map[string]any {
	props := map[string]any{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case f.Anonymous && f.Type.Name() == "TypeMeta":
			props["apiVersion"] = map[string]any{"type": "string"}
			props["kind"] = map[string]any{"type": "string"}
		case f.Anonymous && f.Type.Name() == "ObjectMeta":
			props["metadata"] = map[string]any{"type": "object"}
		case name == "" || name == "-":
		default:
			props[name] = schemaOf(f.Type)
		}
	}
	s := map[string]any{"type": "object"}
	if len(props) > 0 {
		s["properties"] = props
	}
	return s
}
