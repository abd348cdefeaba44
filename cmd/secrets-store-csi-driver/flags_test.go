package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestEveryUpstreamFlag: each flag of the upstream driver's --help is a
// flag here too.
func TestEveryUpstreamFlag(t *testing.T) {
	var help bytes.Buffer
	if _, err := parse([]string{"--help"}, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	f, err := os.Open("testdata/upstream-flags.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" || strings.HasPrefix(name, "#") {
			continue
		}
		if !regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(name) + `[ \t\n]`).MatchString(help.String()) {
			t.Errorf("upstream flag -%s is missing", name)
		}
	}
}

func TestUpstreamMeaning(t *testing.T) {
	t.Setenv("KUBE_NODE_NAME", "node-a")
	c, err := parse([]string{"-v=5", "--enable-secret-rotation=true", "--rotation-poll-interval=30s", "--provider-health-check",
		"--provider-health-check-interval=1m", "--additional-provider-volume-paths=/a,/b", "--provider-volume=/c", "--max-call-recv-msg-size=8388608"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.nodeID != "node-a" || !c.rotation || c.pollInterval != 30*time.Second || !c.healthCheck || c.healthInterval != time.Minute ||
		!slices.Equal(c.providerDirs(), []string{"/a", "/b", "/c"}) || c.maxRecvMsg != 8<<20 {
		t.Errorf("config %+v", c)
	}
	if d, _ := parse(nil, io.Discard); d.rotation || d.healthAddr != "" {
		t.Errorf("rotation is off and /healthz is the livenessprobe sidecar's by default, as upstream: %+v", d)
	}
	if _, err := parse([]string{"--metrics-backend=opencensus"}, io.Discard); err == nil {
		t.Error("an unsupported metrics backend was accepted")
	}
}
