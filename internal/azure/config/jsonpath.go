package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// JSONStep is one step of a JSON field path: a key, or an array index.
type JSONStep struct {
	Key   string
	Index int
	// IsIndex says which of the two it is.
	IsIndex bool
}

// maxJSONPath bounds a path's length.
const maxJSONPath = 512

// ParseJSONPath reads a jsonFields path: keys separated by dots,
// [n] after a key (or another index) for an array element, and a
// backslash before a literal ".", "[", "]" or "\" in a key. Examples:
// "password", "db.credentials.user", "hosts[0]", "a\.b" (the key "a.b").
func ParseJSONPath(path string) ([]JSONStep, error) {
	if path == "" {
		return nil, errors.New("path is empty: name the field, e.g. password or db.user")
	}
	if len(path) > maxJSONPath {
		return nil, fmt.Errorf("path is %d characters; the limit is %d", len(path), maxJSONPath)
	}
	var steps []JSONStep
	var key strings.Builder
	haveKey := false // a key is being read (possibly empty after a dot)
	flush := func() error {
		if !haveKey {
			return nil
		}
		if key.Len() == 0 {
			return fmt.Errorf("path %q has an empty key", path)
		}
		steps = append(steps, JSONStep{Key: key.String()})
		key.Reset()
		haveKey = false
		return nil
	}
	haveKey = true
	for i := 0; i < len(path); i++ {
		switch c := path[i]; c {
		case '\\':
			if i+1 >= len(path) || !strings.ContainsRune(`.[]\`, rune(path[i+1])) {
				return nil, fmt.Errorf("path %q: a backslash escapes only . [ ] or \\", path)
			}
			i++
			key.WriteByte(path[i])
		case '.':
			if err := flush(); err != nil {
				return nil, err
			}
			haveKey = true
		case '[':
			if err := flush(); err != nil {
				return nil, err
			}
			end := strings.IndexByte(path[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("path %q has an unclosed [", path)
			}
			n, err := strconv.Atoi(path[i+1 : i+end])
			if err != nil || n < 0 || path[i+1] == '+' || path[i+1] == '-' {
				return nil, fmt.Errorf("path %q: [%s] is not an array index (0, 1, …)", path, path[i+1:i+end])
			}
			steps = append(steps, JSONStep{Index: n, IsIndex: true})
			i += end
			if i+1 < len(path) && path[i+1] != '.' && path[i+1] != '[' {
				return nil, fmt.Errorf("path %q: put a dot between ] and the next key", path)
			}
		case ']':
			return nil, fmt.Errorf("path %q has a ] without [", path)
		default:
			key.WriteByte(c)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("path %q names no field", path)
	}
	return steps, nil
}

// ErrJSONField is a field a JSON secret does not have, or a secret that is
// not JSON. Its message names the path, never the value.
var ErrJSONField = errors.New("JSON field")

// ExtractJSON returns the field at path of the JSON document doc: a
// string as its text, anything else (number, boolean, null, object,
// array) as compact JSON.
func ExtractJSON(doc []byte, path string) ([]byte, error) {
	steps, err := ParseJSONPath(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w %s: the secret's value is not JSON (%s)", ErrJSONField, path, jsonErrorKind(err))
	}
	if dec.More() {
		return nil, fmt.Errorf("%w %s: the secret's value is not one JSON document", ErrJSONField, path)
	}
	walked := ""
	for _, s := range steps {
		switch cur := v.(type) {
		case map[string]any:
			if s.IsIndex {
				return nil, fmt.Errorf("%w %s: %s is an object, not an array", ErrJSONField, path, orRoot(walked))
			}
			next, ok := cur[s.Key]
			if !ok {
				return nil, fmt.Errorf("%w %s: %s has no key %q", ErrJSONField, path, orRoot(walked), s.Key)
			}
			v = next
			walked = joinStep(walked, s)
		case []any:
			if !s.IsIndex {
				return nil, fmt.Errorf("%w %s: %s is an array, not an object", ErrJSONField, path, orRoot(walked))
			}
			if s.Index >= len(cur) {
				return nil, fmt.Errorf("%w %s: %s has %d elements", ErrJSONField, path, orRoot(walked), len(cur))
			}
			v = cur[s.Index]
			walked = joinStep(walked, s)
		default:
			return nil, fmt.Errorf("%w %s: %s is a %s, not an object or array", ErrJSONField, path, orRoot(walked), jsonKind(cur))
		}
	}
	if str, ok := v.(string); ok {
		return []byte(str), nil
	}
	return json.Marshal(v)
}

// jsonErrorKind says what is wrong with a document without quoting it (a
// syntax error's message can hold part of the secret).
func jsonErrorKind(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	return "it ends early"
}

func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	return "value"
}

func orRoot(walked string) string {
	if walked == "" {
		return "the document"
	}
	return walked
}

func joinStep(walked string, s JSONStep) string {
	if s.IsIndex {
		return walked + "[" + strconv.Itoa(s.Index) + "]"
	}
	k := strings.NewReplacer(`\`, `\\`, ".", `\.`, "[", `\[`, "]", `\]`).Replace(s.Key)
	if walked == "" {
		return k
	}
	return walked + "." + k
}
