// Reading: manifests from files, directories and stdin, each document with
// the line numbers of its fields, so that findings name file:line.

package classcheck

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Document is one YAML document of a manifest file.
type Document struct {
	File string
	node *yaml.Node
	obj  map[string]any
}

// Read reads every YAML document of the files, and of the .yaml and .yml
// files under the directories, in path order; "-" is standard input. A
// file that cannot be read or parsed is a finding, and the others are
// still read: one broken file does not hide the rest.
func Read(paths []string, stdin io.Reader) ([]Document, []Finding) {
	var docs []Document
	var problems []Finding
	for _, p := range paths {
		files, err := expand(p)
		if err != nil {
			problems = append(problems, fileFinding(p, err))
			continue
		}
		for _, f := range files {
			var data []byte
			if f == "-" {
				data, err = io.ReadAll(stdin)
			} else {
				data, err = os.ReadFile(f)
			}
			if err != nil {
				problems = append(problems, fileFinding(f, err))
				continue
			}
			d, err := parse(f, data)
			docs = append(docs, d...)
			if err != nil {
				problems = append(problems, fileFinding(f, err))
			}
		}
	}
	return docs, problems
}

// yamlLine finds the line a YAML error names.
var yamlLine = regexp.MustCompile(`line (\d+)`)

// fileFinding is a file that cannot be read or parsed.
func fileFinding(file string, err error) Finding {
	f := Finding{File: file, Severity: Error, Kind: "file", Name: filepath.Base(file), Message: err.Error() + ": fix the YAML (the other files were checked)"}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		f.Line, _ = strconv.Atoi(m[1])
	}
	return f
}

func expand(p string) ([]string, error) {
	if p == "-" {
		return []string{p}, nil
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return []string{p}, nil
	}
	var files []string
	err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return err
	})
	sort.Strings(files)
	return files, err
}

// parse splits a file into documents, and a List (kubectl get -o yaml's
// kind: List, or any kind ending in List with items) into its items; the
// documents before a syntax error are returned with it.
func parse(file string, data []byte) ([]Document, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []Document
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, err
		}
		var obj map[string]any
		if err := n.Decode(&obj); err != nil || obj == nil {
			continue
		}
		d := Document{File: file, node: &n, obj: obj}
		if items, ok := d.items(); ok {
			docs = append(docs, items...)
			continue
		}
		docs = append(docs, d)
	}
}

// items are a List's items as documents of their own (their nodes, so
// that lines stay right).
func (d Document) items() ([]Document, bool) {
	kind, _ := d.obj["kind"].(string)
	if !strings.HasSuffix(kind, "List") {
		return nil, false
	}
	n := d.node
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	var seq *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "items" && n.Content[i+1].Kind == yaml.SequenceNode {
			seq = n.Content[i+1]
		}
	}
	if seq == nil {
		return nil, false
	}
	var out []Document
	for _, item := range seq.Content {
		var obj map[string]any
		if item.Decode(&obj) == nil && obj != nil {
			out = append(out, Document{File: d.File, node: item, obj: obj})
		}
	}
	return out, true
}

func apiVersion(obj map[string]any) string {
	v, _ := obj["apiVersion"].(string)
	return v
}

// line is the line of the value at path (mapping keys) in the document, or
// of the deepest key found.
func (d Document) line(path ...string) int {
	n := d.node
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, key := range path {
		if n.Kind != yaml.MappingNode {
			return line
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				line, n, found = n.Content[i].Line, n.Content[i+1], true
				break
			}
		}
		if !found {
			return line
		}
	}
	return line
}

// classLine finds the parameter a parser error names, and the object's
// entry inside the objects block.
func (d Document) classLine(field, object string) int {
	key := field
	if strings.Contains(key, "/") || key == "" {
		key = "objects"
	}
	line := d.line("spec", "parameters", key)
	if key != "objects" || object == "" {
		return line
	}
	// object is "<index> <name>": find "objectName: <name>" in the block.
	_, objName, _ := strings.Cut(object, " ")
	spec, _ := d.obj["spec"].(map[string]any)
	params, _ := spec["parameters"].(map[string]any)
	text, _ := params["objects"].(string)
	for i, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "objectName:"); ok && strings.Trim(strings.TrimSpace(v), `"'`) == objName && objName != "" {
			return line + 1 + i
		}
	}
	return line
}

// dig follows keys through nested mappings.
func dig(obj map[string]any, keys ...string) map[string]any {
	cur := obj
	for _, k := range keys {
		next, _ := cur[k].(map[string]any)
		if next == nil {
			return map[string]any{}
		}
		cur = next
	}
	return cur
}

// seqLine is the line of element i of the sequence at path.
func (d Document) seqLine(path []string, i int) int {
	n := d.node
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, key := range path {
		if n.Kind != yaml.MappingNode {
			return d.line(path...)
		}
		var next *yaml.Node
		for j := 0; j+1 < len(n.Content); j += 2 {
			if n.Content[j].Value == key {
				next = n.Content[j+1]
			}
		}
		if next == nil {
			return d.line(path...)
		}
		n = next
	}
	if n.Kind == yaml.SequenceNode && i < len(n.Content) {
		return n.Content[i].Line
	}
	return d.line(path...)
}
