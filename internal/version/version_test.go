package version

import (
	"encoding/json"
	"testing"
)

// TestJSON: --version prints one JSON object with the version, as
// upstream's binaries do (tools parse it).
func TestJSON(t *testing.T) {
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "v9.8.7"
	var out map[string]string
	if err := json.Unmarshal([]byte(JSON()), &out); err != nil {
		t.Fatalf("not JSON: %v: %s", err, JSON())
	}
	if out["version"] != "v9.8.7" {
		t.Errorf("version %q, want v9.8.7", out["version"])
	}
	for k := range out {
		if k != "version" && k != "revision" && k != "buildDate" {
			t.Errorf("unexpected key %q", k)
		}
	}
}
