package cli

import (
	"fmt"
	"strconv"
	"strings"
)

// Query evaluates the subset of JMESPath that `az --query` is used with in
// practice: field paths (a.b.c, "quoted-name"), indexes ([0], [-1]) and
// projections over lists ([*].name, [].name). Anything else is an error that
// says what is supported, never a silent wrong answer.
func Query(v any, expr string) (any, error) {
	steps, err := parseQuery(expr)
	if err != nil {
		return nil, err
	}
	return apply(v, steps), nil
}

type step struct {
	field   string
	index   *int
	project bool
}

func parseQuery(expr string) ([]step, error) {
	var steps []step
	s := strings.TrimSpace(expr)
	if s == "" {
		return nil, fmt.Errorf("--query: empty expression")
	}
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == '.':
			if i == 0 || i == len(s)-1 {
				return nil, queryError(expr, i)
			}
			i++
		case c == '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return nil, queryError(expr, i)
			}
			inner := s[i+1 : i+end]
			switch inner {
			case "*", "":
				steps = append(steps, step{project: true})
			default:
				n, err := strconv.Atoi(inner)
				if err != nil {
					return nil, queryError(expr, i)
				}
				steps = append(steps, step{index: &n})
			}
			i += end + 1
		case c == '"':
			end := strings.IndexByte(s[i+1:], '"')
			if end < 0 {
				return nil, queryError(expr, i)
			}
			steps = append(steps, step{field: s[i+1 : i+1+end]})
			i += end + 2
		case isIdent(c):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			steps = append(steps, step{field: s[i:j]})
			i = j
		default:
			return nil, queryError(expr, i)
		}
	}
	return steps, nil
}

func isIdent(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func queryError(expr string, at int) error {
	return fmt.Errorf("--query %q: unsupported syntax at offset %d; azsim supports field paths (a.b), \"quoted\" fields, [N] indexes and [*] projections", expr, at)
}

// apply walks v along steps; a missing field or index yields nil, as in
// JMESPath. A projection applies the remaining steps to each element and
// drops nil results.
func apply(v any, steps []step) any {
	for i, st := range steps {
		switch {
		case st.project:
			list, ok := v.([]any)
			if !ok {
				return nil
			}
			out := []any{}
			for _, e := range list {
				if r := apply(e, steps[i+1:]); r != nil {
					out = append(out, r)
				}
			}
			return out
		case st.index != nil:
			list, ok := v.([]any)
			if !ok {
				return nil
			}
			n := *st.index
			if n < 0 {
				n += len(list)
			}
			if n < 0 || n >= len(list) {
				return nil
			}
			v = list[n]
		default:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[st.field]
		}
	}
	return v
}
