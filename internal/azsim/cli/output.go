package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Format writes v as `az -o <format>` would: json (indented), tsv (scalars
// tab-separated, one line per list element), table, yaml, or none.
func Format(w io.Writer, v any, format string) error {
	switch format {
	case "", "json", "jsonc":
		if v == nil {
			return nil
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "tsv":
		return writeTSV(w, v)
	case "table":
		return writeTable(w, v)
	case "yaml", "yamlc":
		if v == nil {
			return nil
		}
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case "none":
		return nil
	}
	return fmt.Errorf("argument --output/-o: invalid choice: '%s' (choose from 'json', 'jsonc', 'none', 'table', 'tsv', 'yaml', 'yamlc')", format)
}

func writeTSV(w io.Writer, v any) error {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		for _, e := range x {
			if err := writeTSV(w, e); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var cols []string
		for _, k := range keys {
			if s, ok := scalar(x[k]); ok {
				cols = append(cols, s)
			}
		}
		_, err := fmt.Fprintln(w, strings.Join(cols, "\t"))
		return err
	}
	s, _ := scalar(v)
	_, err := fmt.Fprintln(w, s)
	return err
}

// scalar renders a JSON scalar as az's tsv does (booleans as True/False);
// objects and lists are not scalars.
func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "None", true
	case string:
		return x, true
	case bool:
		if x {
			return "True", true
		}
		return "False", true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case json.Number:
		return x.String(), true
	}
	return "", false
}

// tableSkip are the keys az's table output leaves out.
var tableSkip = map[string]bool{"id": true, "type": true, "etag": true}

// writeTable prints v as az's `-o table` does: one row per object (a list
// gives several), a column per scalar key other than id, type and etag,
// headed by the key with its first letter capitalised and underlined with
// dashes (at least two wider than the heading, as tabulate pads it),
// columns two spaces apart, numbers aligned right. A bare scalar prints
// under the heading "Result".
func writeTable(w io.Writer, v any) error {
	if v == nil {
		return nil
	}
	items, ok := v.([]any)
	if !ok {
		items = []any{v}
	}
	var rows []map[string]any
	var cols []string
	seen := map[string]bool{}
	for _, it := range items {
		row := tableRow(it)
		rows = append(rows, row)
		keys := make([]string, 0, len(row))
		for k := range row {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !seen[k] {
				seen[k] = true
				cols = append(cols, k)
			}
		}
	}
	if len(cols) == 0 {
		return nil
	}
	cells := make([][]string, len(rows))
	width := make([]int, len(cols))
	right := make([]bool, len(cols))
	for j, c := range cols {
		width[j] = len(c) + 2 // tabulate's minimum padding of a heading
		right[j] = true
	}
	for i, row := range rows {
		cells[i] = make([]string, len(cols))
		for j, c := range cols {
			x, ok := row[c]
			if !ok {
				continue
			}
			s, _ := scalar(x)
			if _, num := x.(float64); !num {
				right[j] = false
			}
			cells[i][j] = s
			width[j] = max(width[j], len(s))
		}
	}
	line := func(vals []string) string {
		parts := make([]string, len(vals))
		for j, s := range vals {
			if right[j] {
				parts[j] = fmt.Sprintf("%*s", width[j], s)
			} else {
				parts[j] = fmt.Sprintf("%-*s", width[j], s)
			}
		}
		return strings.TrimRight(strings.Join(parts, "  "), " ")
	}
	head := make([]string, len(cols))
	dash := make([]string, len(cols))
	for j, c := range cols {
		head[j] = c
		dash[j] = strings.Repeat("-", width[j])
	}
	out := []string{line(head), strings.Join(dash, "  ")}
	for _, r := range cells {
		out = append(out, line(r))
	}
	_, err := fmt.Fprintln(w, strings.Join(out, "\n"))
	return err
}

// tableRow keeps an object's scalar, non-null values under capitalised
// keys; anything else is one "Result" cell.
func tableRow(v any) map[string]any {
	m, ok := v.(map[string]any)
	if !ok {
		if _, ok := scalar(v); ok {
			return map[string]any{"Result": v}
		}
		return nil
	}
	row := map[string]any{}
	for k, x := range m {
		if tableSkip[k] || x == nil || k == "" {
			continue
		}
		if _, ok := scalar(x); ok {
			row[strings.ToUpper(k[:1])+k[1:]] = x
		}
	}
	return row
}
