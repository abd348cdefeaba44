package logs

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

func parse(t *testing.T, args ...string) *Options {
	t.Helper()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o := AddFlags(fs)
	if err := fs.Parse(NormalizeArgs(args)); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	if fs.NArg() != 0 {
		t.Fatalf("%v left arguments %v", args, fs.Args())
	}
	return o
}

// TestFlags: upstream's forms (-v=5, --v=2, -v 3, klog's other flags) and
// kvmount's bare -v all parse, with klog's meaning.
func TestFlags(t *testing.T) {
	tests := []struct {
		args []string
		want int
	}{
		{[]string{"-v=5"}, 5},
		{[]string{"--v=2"}, 2},
		{[]string{"-v", "3"}, 3},
		{[]string{"-v"}, 4},
		{[]string{"-v=0", "--logtostderr=true", "--vmodule=publish=6", "--add_dir_header", "--skip_headers=false", "--one_output"}, 0},
		{[]string{"--log-format-json=true", "-v=1"}, 1},
	}
	for _, tt := range tests {
		if got := parse(t, tt.args...).level(); got != tt.want {
			t.Errorf("%v: level %d, want %d", tt.args, got, tt.want)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	AddFlags(fs)
	if err := fs.Parse([]string{"-v=lots"}); err == nil {
		t.Error("-v=lots accepted")
	}
}

// TestJSON: the component-base shape, levels honoured.
func TestJSON(t *testing.T) {
	var buf bytes.Buffer
	o := parse(t, "--log-format-json", "-v=4")
	l, err := o.LoggerTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("mounted", "pod", "ns/p")
	l.Debug("detail")
	l.Log(nil, slog.Level(-5), "too verbose")
	l.Warn("refresh failed", "err", "boom")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3 (-v=4 hides v=5):\n%s", len(lines), buf.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ts", "caller", "msg", "v", "pod"} {
		if _, ok := first[k]; !ok {
			t.Errorf("no %q in %s", k, lines[0])
		}
	}
	if !strings.Contains(lines[1], `"v":4`) || !strings.Contains(lines[2], `"level":"warn"`) {
		t.Errorf("levels: %s / %s", lines[1], lines[2])
	}
	if _, err := parse(t, "--logging-format=xml").LoggerTo(&buf); err == nil {
		t.Error("--logging-format=xml accepted")
	}
}

func TestNormalizeArgs(t *testing.T) {
	got := NormalizeArgs([]string{"-v", "5", "--endpoint", "x", "-v", "--other"})
	want := []string{"-v=5", "--endpoint", "x", "-v", "--other"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
