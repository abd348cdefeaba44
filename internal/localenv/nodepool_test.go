package localenv

import (
	"strings"
	"testing"
)

// TestOnlyScaleSet: an `az vmss list` answer with no scale set, several, or
// a malformed one is an error that says what to do, never a panic (the
// cluster benchmark once indexed the first set blindly).
func TestOnlyScaleSet(t *testing.T) {
	tests := []struct {
		name string
		list map[string]any
		want string
	}{
		{"one", map[string]any{"value": []any{map[string]any{"name": "aks-nodepool1-vmss"}}}, ""},
		{"none", map[string]any{"value": []any{}}, "holds 0 scale sets"},
		{"no value", map[string]any{}, "holds 0 scale sets"},
		{"two", map[string]any{"value": []any{map[string]any{"name": "a"}, map[string]any{"name": "b"}}}, "holds 2 scale sets"},
		{"not an object", map[string]any{"value": []any{"x"}}, "has no name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := onlyScaleSet("rg", tt.list)
			if tt.want == "" {
				if err != nil || got != "aks-nodepool1-vmss" {
					t.Errorf("got %q %v", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %q %v, want an error with %q", got, err, tt.want)
			}
		})
	}
}
