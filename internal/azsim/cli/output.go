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
// tab-separated, one line per list element), yaml, or none.
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
	return fmt.Errorf("argument --output/-o: invalid choice: '%s' (choose from 'json', 'jsonc', 'none', 'tsv', 'yaml', 'yamlc')", format)
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
