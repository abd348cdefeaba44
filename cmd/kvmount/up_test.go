package main

import (
	"errors"
	"strings"
	"testing"
)

func TestParseUp(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		want      upConfig
		wantErr   string
		wantUsage bool
	}{
		{name: "defaults", args: nil, want: upConfig{nodes: 2, dir: "/var/lib/kvmount/env", basePort: 16443, runtime: "containerd"}},
		{name: "all flags", args: []string{"--nodes", "2", "--dir", "/x", "--base-port", "20000", "--runtime", "fake"}, want: upConfig{nodes: 2, dir: "/x", basePort: 20000, runtime: "fake"}},
		{name: "zero nodes", args: []string{"--nodes=0"}, wantErr: "--nodes 0"},
		{name: "privileged port", args: []string{"--base-port=80"}, wantErr: "--base-port 80"},
		{name: "unknown flag", args: []string{"--node=2"}, wantErr: "flag provided but not defined", wantUsage: true},
		{name: "stray argument", args: []string{"now"}, wantErr: `unexpected argument "now"`, wantUsage: true},
		{name: "unknown runtime", args: []string{"--runtime=docker"}, wantErr: `--runtime "docker": choose containerd or fake`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseUp(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				if errors.Is(err, errUsage) != tt.wantUsage {
					t.Errorf("usage error = %v, want %v", errors.Is(err, errUsage), tt.wantUsage)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
