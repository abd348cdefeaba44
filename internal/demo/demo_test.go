package demo

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestManifests: every manifest the demo shows parses once its
// placeholders are filled, and names only placeholders the demo fills
// (Play's vars, and the extras its sections pass).
func TestManifests(t *testing.T) {
	filled := map[string]string{"<key-vault-name>": vault, "<tenant-id>": "t", "<tenant-Id>": "t",
		"<client-id>": "c", "<ib-client-id>": "c", "<sync-client-id>": "c", "<name>": "n"}
	placeholder := regexp.MustCompile(`<[A-Za-z-]+>`)
	names, err := fs.Glob(manifests, "manifests/*.yaml")
	if err != nil || len(names) == 0 {
		t.Fatalf("manifests %v %v", names, err)
	}
	for _, name := range names {
		b, _ := manifests.ReadFile(name)
		text := string(b)
		for _, p := range placeholder.FindAllString(text, -1) {
			if _, ok := filled[p]; !ok {
				t.Errorf("%s: placeholder %s the demo does not fill", name, p)
			}
		}
		for k, v := range filled {
			text = strings.ReplaceAll(text, k, v)
		}
		for _, doc := range strings.Split(text, "\n---\n") {
			var obj struct {
				Kind     string
				Metadata struct{ Name string }
			}
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				t.Errorf("%s: %v", name, err)
			}
			if obj.Kind == "" || obj.Metadata.Name == "" {
				t.Errorf("%s: a document without kind or name", name)
			}
		}
	}
}

func TestText(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{indent("a\nb\n"), "    a\n    b"},
		{indent("\n"), ""},
		{clip("1\n2\n3\n4\n", 2), "1\n2\n… (2 more lines)"},
		{clip("1\n2\n", 2), "1\n2\n"},
		{short("0123456789abcdef"), "(01234567…)"},
		{short("abc"), "abc"},
		{labelNote(map[string]string{"<name>": "web"}), ", labelled aadpodidbinding: web"},
		{labelNote(nil), ""},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
