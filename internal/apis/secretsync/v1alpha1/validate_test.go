package v1alpha1

import (
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestRulesMatchCRD: the Go rules are the CRD's: the same patterns, and
// the CEL rules' limits and reserved prefix are those Validate applies.
func TestRulesMatchCRD(t *testing.T) {
	b, err := os.ReadFile("../../../../deploy/crds/secret-sync.x-k8s.io.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crd map[string]any
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatal(err)
	}
	spec := dig(t, crd, "spec", "versions", 0, "schema", "openAPIV3Schema", "properties", "spec", "properties")
	so := dig(t, spec, "secretObject", "properties")
	item := dig(t, so, "data", "items", "properties")
	for _, c := range []struct {
		got  any
		want string
	}{
		{dig(t, item, "sourcePath", "pattern"), PathPattern},
		{dig(t, item, "targetKey", "pattern"), PathPattern},
		{dig(t, spec, "secretProviderClassName", "pattern"), NamePattern},
		{dig(t, spec, "serviceAccountName", "pattern"), NamePattern},
		{dig(t, spec, "forceSynchronization", "pattern"), ForcePattern},
		{dig(t, so, "type", "pattern"), TypePattern},
		{dig(t, so, "type", "default"), DefaultType},
	} {
		if c.got != c.want {
			t.Errorf("CRD has %v, Go has %q", c.got, c.want)
		}
	}
	rules := func(field string) string {
		var out []string
		for _, r := range dig(t, so, field, "x-kubernetes-validations").([]any) {
			out = append(out, r.(map[string]any)["rule"].(string))
		}
		return strings.Join(out, " ")
	}
	for _, want := range []string{"x.size() <= 317", "self[x].size() <= 63", "startsWith('" + Reserved + "')"} {
		if !strings.Contains(rules("labels"), want) {
			t.Errorf("the labels' CEL rules lack %q (Go: keys <= %d, values <= %d)", want, MaxLabelKey, MaxLabelValue)
		}
	}
	for _, want := range []string{"x.size() < 317", "self[x].size() <= 262144", "startsWith('" + Reserved + "')"} {
		if !strings.Contains(rules("annotations"), want) {
			t.Errorf("the annotations' CEL rules lack %q (Go: keys <= %d, values <= %d)", want, MaxAnnotationKey, MaxAnnotationValue)
		}
	}
}

func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("no %s in %v", k, path)
			}
			v = m[k]
		case int:
			v = v.([]any)[k]
		}
	}
	return v
}

func valid() *SecretSync {
	return &SecretSync{Spec: SecretSyncSpec{SecretProviderClassName: "azure-kv", ServiceAccountName: "default",
		SecretObject: SecretObject{Type: "Opaque", Data: []SecretObjectData{{SourcePath: "secret1", TargetKey: "password"}}}}}
}

// TestValidate: upstream's documented examples pass; each broken rule is
// named at its field.
func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*SecretSync)
		want string
	}{
		{"valid", func(*SecretSync) {}, ""},
		{"version history file", func(s *SecretSync) { s.Spec.SecretObject.Data[0].SourcePath = "secret1/0" }, ""},
		{"tls", func(s *SecretSync) {
			s.Spec.SecretObject.Type = "kubernetes.io/tls"
			s.Spec.SecretObject.Data = []SecretObjectData{{"cert1", "tls.crt"}, {"cert1", "tls.key"}}
		}, ""},
		{"no type is Opaque", func(s *SecretSync) { s.Spec.SecretObject.Type = "" }, ""},
		{"no class", func(s *SecretSync) { s.Spec.SecretProviderClassName = "" }, "spec.secretProviderClassName: is required"},
		{"upper-case class", func(s *SecretSync) { s.Spec.SecretProviderClassName = "Azure" }, "spec.secretProviderClassName: \"Azure\" is not a valid name"},
		{"no data", func(s *SecretSync) { s.Spec.SecretObject.Data = nil }, "spec.secretObject.data: needs at least one entry"},
		{"path with slash", func(s *SecretSync) { s.Spec.SecretObject.Data[0].SourcePath = "a/b" }, "data[0].sourcePath: \"a/b\" is not a file"},
		{"duplicate key", func(s *SecretSync) {
			s.Spec.SecretObject.Data = append(s.Spec.SecretObject.Data, SecretObjectData{"other", "password"})
		}, "data[1].targetKey: \"password\" is also data[0]'s"},
		{"reserved label", func(s *SecretSync) { s.Spec.SecretObject.Labels = map[string]string{Reserved: "x"} }, "keys under secrets-store.sync.x-k8s.io are the controller's"},
		{"reserved annotation prefix", func(s *SecretSync) {
			s.Spec.SecretObject.Annotations = map[string]string{Reserved + "/x": "x"}
		}, "keys under"},
		{"long label value", func(s *SecretSync) { s.Spec.SecretObject.Labels = map[string]string{"a": strings.Repeat("v", 64)} }, "at most 63"},
		{"space in type", func(s *SecretSync) { s.Spec.SecretObject.Type = "my type" }, "must not contain whitespace"},
		{"bad force", func(s *SecretSync) { s.Spec.ForceSynchronization = "-x" }, "spec.forceSynchronization"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := valid()
			tt.edit(ss)
			errs := Validate(ss)
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			joined := strings.Join(got, "; ")
			if tt.want == "" && len(errs) > 0 || tt.want != "" && !strings.Contains(joined, tt.want) {
				t.Errorf("got %q, want %q", joined, tt.want)
			}
		})
	}
}

// FuzzValidate: any SecretSync is judged without a panic, and whatever
// passes has names the API server accepts.
func FuzzValidate(f *testing.F) {
	f.Add("azure-kv", "default", "secret1", "password", "Opaque", "")
	f.Add("", "", "", "", "", "x")
	f.Add("a.b", "s", "x/0", "y/1", "kubernetes.io/tls", "now")
	f.Fuzz(func(t *testing.T, class, sa, src, key, typ, force string) {
		ss := &SecretSync{Spec: SecretSyncSpec{SecretProviderClassName: class, ServiceAccountName: sa, ForceSynchronization: force,
			SecretObject: SecretObject{Type: typ, Data: []SecretObjectData{{src, key}}}}}
		if len(Validate(ss)) == 0 && (!nameRE.MatchString(class) || !pathRE.MatchString(key)) {
			t.Errorf("accepted class %q key %q", class, key)
		}
	})
}
