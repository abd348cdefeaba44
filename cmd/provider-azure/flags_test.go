package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestEveryUpstreamFlag: each flag of the upstream provider's --help is a
// flag here too.
func TestEveryUpstreamFlag(t *testing.T) {
	var help bytes.Buffer
	if _, err := parse([]string{"--help"}, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	for _, name := range upstreamFlags(t) {
		if !regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(name) + `[ \t\n]`).MatchString(help.String()) {
			t.Errorf("upstream flag -%s is missing", name)
		}
	}
}

func upstreamFlags(t *testing.T) []string {
	f, err := os.Open("testdata/upstream-flags.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			names = append(names, l)
		}
	}
	return names
}

// TestUpstreamMeaning: upstream's flags set what they say; kvmount's own
// win where both name one thing.
func TestUpstreamMeaning(t *testing.T) {
	t.Setenv("AZURE_ENVIRONMENT_FILEPATH", "/etc/kubernetes/azurestackcloud.json")
	tests := []struct {
		args  []string
		check func(config) bool
	}{
		{[]string{"--healthz-port=9999", "--healthz-path=/live", "--healthz-timeout=2s"}, func(c config) bool {
			return c.run.HealthAddr == ":9999" && c.run.HealthPath == "/live" && c.run.HealthTimeout == 2*time.Second
		}},
		{[]string{"--healthz-port=9999", "--healthz-addr=127.0.0.1:1"}, func(c config) bool { return c.run.HealthAddr == "127.0.0.1:1" }},
		{[]string{"--prometheus-port=9100"}, func(c config) bool { return c.run.MetricsAddr == ":9100" }},
		{[]string{"--metrics-addr=none"}, func(c config) bool { return c.run.MetricsAddr == "" }},
		{[]string{"--custom-user-agent=aks"}, func(c config) bool { return c.run.UserAgent == "aks" }},
		{[]string{"--enable-pprof", "--pprof-port=7000"}, func(c config) bool { return c.run.PProfPort == 7000 }},
		{[]string{"--pprof-port=7000"}, func(c config) bool { return c.run.PProfPort == 0 }},
		{nil, func(c config) bool { return c.run.CloudEnvFile == "/etc/kubernetes/azurestackcloud.json" }},
		{[]string{"--construct-pem-chain=false", "--write-cert-and-key-in-separate-files"}, func(c config) bool {
			return !c.run.ConstructPEMChain && c.run.SeparateCertKey
		}},
		{[]string{"-v=5", "--log-format-json=true"}, func(c config) bool { return c.logs != nil }},
		{[]string{"--token-proxy-url=https://proxy", "--sni-name=a.ests.aks"}, func(c config) bool {
			return c.run.TokenProxyURL == "https://proxy" && c.run.SNIName == "a.ests.aks"
		}},
	}
	for _, tt := range tests {
		c, err := parse(tt.args, io.Discard)
		if err != nil || !tt.check(c) {
			t.Errorf("%v: %v, config %+v", tt.args, err, c.run)
		}
	}
	if _, err := parse([]string{"--metrics-backend=stackdriver"}, io.Discard); err == nil || !strings.Contains(err.Error(), "unsupported metrics backend") {
		t.Errorf("--metrics-backend=stackdriver: %v", err)
	}
}
