package config

import (
	"errors"
	"strings"
	"testing"
)

func TestExtractJSON(t *testing.T) {
	doc := []byte(`{"user":"app","password":"CANARY-s3cr3t","port":5432,"tls":true,"hosts":["a.example","b.example"],
		"db":{"credentials":{"user":"ro"},"opts":{"x":1}},"a.b":"dotted","nil":null}`)
	tests := []struct {
		path, want, err string
	}{
		{"user", "app", ""},
		{"password", "CANARY-s3cr3t", ""},
		{"port", "5432", ""},
		{"tls", "true", ""},
		{"hosts[1]", "b.example", ""},
		{"db.credentials.user", "ro", ""},
		{"db.opts", `{"x":1}`, ""},
		{"hosts", `["a.example","b.example"]`, ""},
		{`a\.b`, "dotted", ""},
		{"nil", "null", ""},
		{"missing", "", `the document has no key "missing"`},
		{"db.credentials.pass", "", `db.credentials has no key "pass"`},
		{"hosts[2]", "", "hosts has 2 elements"},
		{"hosts.x", "", "hosts is an array, not an object"},
		{"db[0]", "", "db is an object, not an array"},
		{"user.x", "", "user is a string, not an object or array"},
		{"", "", "path is empty"},
		{"a..b", "", "empty key"},
		{".a", "", "empty key"},
		{"a[", "", "unclosed ["},
		{"a[-1]", "", "is not an array index"},
		{"a[0]b", "", "put a dot between ] and the next key"},
		{`a\q`, "", "a backslash escapes only"},
	}
	for _, tt := range tests {
		got, err := ExtractJSON(doc, tt.path)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: got %q, %v; want error %q", tt.path, got, err, tt.err)
			}
			continue
		}
		if err != nil || string(got) != tt.want {
			t.Errorf("%q: got %q, %v; want %q", tt.path, got, err, tt.want)
		}
	}
	for _, bad := range []string{`{"password":"CANARY-s3cr3t"`, `CANARY-s3cr3t`, `{"a":1} {"b":2}`} {
		_, err := ExtractJSON([]byte(bad), "password")
		if !errors.Is(err, ErrJSONField) || !strings.Contains(err.Error(), "not") {
			t.Errorf("%q: %v", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), "CANARY") {
			t.Errorf("the error quotes the secret: %v", err)
		}
	}
}

// FuzzExtractJSON: any path and document give a value or an error, never
// a panic, and an error never quotes the document.
func FuzzExtractJSON(f *testing.F) {
	f.Add([]byte(`{"a":{"b":[1,"x"]}}`), "a.b[1]")
	f.Add([]byte(`{"a.b":"c"}`), `a\.b`)
	f.Add([]byte(`[1,2`), "a")
	f.Add([]byte(`{"k":"v"}`), "k[0].x")
	f.Fuzz(func(t *testing.T, doc []byte, path string) {
		const canary = "QZXCANARYQZX"
		d := append([]byte(canary), doc...)
		_, err := ExtractJSON(d, path)
		if err != nil && strings.Contains(err.Error(), canary) && !strings.Contains(path, canary) {
			t.Fatalf("error quotes the document: %v", err)
		}
		if steps, err := ParseJSONPath(path); err == nil && len(steps) == 0 {
			t.Fatalf("%q parsed to no step", path)
		}
	})
}
