package main

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoReflection: the provider never reaches into another module's
// internals (upstream's identity binding does, with reflect and unsafe on
// azidentity's unexported fields): no non-test file of the provider's
// packages imports reflect or unsafe.
func TestNoReflection(t *testing.T) {
	checked := 0
	for _, root := range []string{".", "../../internal/azure"} {
		err := filepath.Walk(root, func(path string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			checked++
			for _, imp := range f.Imports {
				if p := strings.Trim(imp.Path.Value, `"`); p == "reflect" || p == "unsafe" {
					t.Errorf("%s imports %s", path, p)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked < 20 {
		t.Fatalf("only %d files checked", checked)
	}
}
