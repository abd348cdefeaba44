package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestParse: upstream's chart arguments parse with their meaning, and a
// half-given configuration is refused with a message naming what is
// missing.
func TestParse(t *testing.T) {
	t.Setenv("SYNC_CONTROLLER_POD_NAMESPACE", "")
	t.Setenv("SYNC_CONTROLLER_POD_NAME", "")
	t.Setenv("AZURE_TENANT_ID", "")
	t.Setenv("AZURE_CLIENT_ID", "")
	webhook := []string{"--events-webhook-bind-address=:8443", "--events-webhook-tls-cert-file=c", "--events-webhook-tls-key-file=k"}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
		check   func(t *testing.T, c config)
	}{
		{name: "defaults", check: func(t *testing.T, c config) {
			if c.providerDir != "/provider" || c.poll != 2*time.Minute || c.maxRecvMsg != 4<<20 || c.leaderElect || c.metricsAddr != ":8085" {
				t.Errorf("defaults %+v", c)
			}
			if got := c.audienceList(); len(got) != 2 || got[0] != "api://AzureADTokenExchange" {
				t.Errorf("default audiences %q", got)
			}
		}},
		{name: "upstream chart's arguments", env: map[string]string{"SYNC_CONTROLLER_POD_NAMESPACE": "kube-system", "SYNC_CONTROLLER_POD_NAME": "ssc-0"},
			args: []string{"--provider-volume=/var/run/secrets-store-sync-providers", "--token-request-audience=api://AzureADTokenExchange",
				"--rotation-poll-interval=30s", "--leader-elect", "--health-probe-bind-address=:8081", "--metrics-bind-address=:8085", "--max-call-recv-msg-size=8388608"},
			check: func(t *testing.T, c config) {
				if c.providerDir != "/var/run/secrets-store-sync-providers" || c.poll != 30*time.Second || !c.leaderElect || c.maxRecvMsg != 8<<20 ||
					c.namespace != "kube-system" || c.podName != "ssc-0" || len(c.audienceList()) != 1 {
					t.Errorf("parsed %+v", c)
				}
			}},
		{name: "single-dash flags", args: []string{"-rotation-poll-interval", "1m"}, check: func(t *testing.T, c config) {
			if c.poll != time.Minute {
				t.Errorf("poll %s", c.poll)
			}
		}},
		{name: "metrics off", args: []string{"--metrics-bind-address=0"}, check: func(t *testing.T, c config) {
			if c.metricsAddr != "" {
				t.Errorf("metrics address %q, want none", c.metricsAddr)
			}
		}},
		{name: "version needs nothing else", args: []string{"--version", "--leader-elect"}},
		{name: "stray argument", args: []string{"extra"}, wantErr: `unexpected argument "extra"`},
		{name: "lease without identity", args: []string{"--leader-elect"}, wantErr: "SYNC_CONTROLLER_POD_NAME"},
		{name: "no audience", args: []string{"--token-request-audience= , "}, wantErr: "--token-request-audience is empty"},
		{name: "bad duration", args: []string{"--rotation-poll-interval=soon"}, wantErr: "rotation-poll-interval"},
		{name: "webhook without TLS", args: []string{"--events-webhook-bind-address=:8443", "--events-webhook-key-file=k"}, wantErr: "HTTPS only"},
		{name: "webhook without authentication", args: webhook, wantErr: "needs authentication"},
		{name: "Entra webhook without tenant", args: append(webhook, "--events-webhook-audience=api://kvmount"), wantErr: "needs --events-tenant-id"},
		{name: "Entra webhook", args: append(webhook, "--events-webhook-audience=api://kvmount", "--events-tenant-id=t"), check: func(t *testing.T, c config) {
			if !c.events.enabled() {
				t.Error("events not enabled")
			}
		}},
		{name: "keyed webhook", args: append(webhook, "--events-webhook-key-file=k")},
		{name: "half a namespace topic", args: []string{"--events-namespace-endpoint=https://ns.westeurope-1.eventgrid.azure.net", "--events-namespace-topic=kv"}, wantErr: "--events-namespace-subscription"},
		{name: "namespace topic from the environment's identity", env: map[string]string{"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c"},
			args: []string{"--events-namespace-endpoint=https://ns.westeurope-1.eventgrid.azure.net", "--events-namespace-topic=kv", "--events-namespace-subscription=ctl"},
			check: func(t *testing.T, c config) {
				if c.events.tenant != "t" || c.events.clientID != "c" || !c.events.enabled() {
					t.Errorf("events %+v", c.events)
				}
			}},
		{name: "repeatable CA files", args: []string{"--ca-file=a.pem", "--ca-file=b.pem"}, check: func(t *testing.T, c config) {
			if len(c.events.caFiles) != 2 || c.events.enabled() {
				t.Errorf("events %+v", c.events)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := parse(tc.args, io.Discard)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

// TestHTTPClientOverrides: a malformed --host-override is refused by name.
func TestHTTPClientOverrides(t *testing.T) {
	if _, err := (eventsConfig{overrides: stringList{"no-address"}}).httpClient(); err == nil || !strings.Contains(err.Error(), "--host-override") {
		t.Fatalf("malformed override: %v", err)
	}
	if _, err := (eventsConfig{overrides: stringList{".vault.azure.net=127.0.0.1:8443"}}).httpClient(); err != nil {
		t.Fatalf("override refused: %v", err)
	}
}
