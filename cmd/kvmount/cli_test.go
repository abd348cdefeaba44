package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"kvmount.dev/kvmount/internal/localcluster"
)

// TestHelpEverywhere: --help and -h on every verb print its usage and
// succeed.
func TestHelpEverywhere(t *testing.T) {
	for _, args := range [][]string{{"up", "--help"}, {"up", "-h"}, {"demo", "--help"}, {"files", "--help"}, {"files", "ns/p", "--help"},
		{"bench", "provider", "--help"}, {"bench", "--help"}, {"bench", "cluster", "--help"}, {"check", "--help"},
		{"run", "--help"}, {"run", "-h"}, {"run", "--dir", "/nonexistent", "--help"}, {"--help"}, {"help"}} {
		err := run(context.Background(), args)
		if err != nil && !errors.Is(err, errHelp) {
			t.Errorf("kvmount %s: %v", strings.Join(args, " "), err)
		}
	}
}

// TestRunArgs: kvmount run's own flags stop at "--" or at the command,
// whose flags are passed on untouched.
func TestRunArgs(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		cmd     []string
		dir     string
		wantErr bool
	}{
		{args: []string{"--", "kubectl", "get", "pods"}, cmd: []string{"kubectl", "get", "pods"}, dir: "/var/lib/kvmount/env"},
		{args: []string{"--dir", "/d", "--", "kubectl", "-n", "x"}, cmd: []string{"kubectl", "-n", "x"}, dir: "/d"},
		{args: []string{"--dir=/d", "azsim", "--help"}, cmd: []string{"azsim", "--help"}, dir: "/d"},
		{args: []string{"kubectl", "--dir", "/e"}, cmd: []string{"kubectl", "--dir", "/e"}, dir: "/var/lib/kvmount/env"},
		{args: []string{"--dir", "/d"}, wantErr: true},
		{args: []string{"--"}, wantErr: true},
		{args: []string{"--bogus", "--", "ls"}, wantErr: true},
	} {
		cmd, dir, err := runArgs(tc.args, io.Discard)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: error %v, want error %v", tc.args, err, tc.wantErr)
			continue
		}
		if err == nil && (strings.Join(cmd, " ") != strings.Join(tc.cmd, " ") || dir != tc.dir) {
			t.Errorf("%q: command %q in %s, want %q in %s", tc.args, cmd, dir, tc.cmd, tc.dir)
		}
	}
}

// TestFilesFlagsAfterArgument: `kvmount files ns/pod --dir D` as the docs
// print it reaches the environment in D.
func TestFilesFlagsAfterArgument(t *testing.T) {
	dir := t.TempDir()
	err := files(context.Background(), []string{"default/p", "--dir", dir}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no environment in "+dir) {
		t.Fatalf("got %v, want it to read the environment in %s", err, dir)
	}
}

// TestVersionOfEveryBinary: --version works on all four binaries.
func TestVersionOfEveryBinary(t *testing.T) {
	bin, err := localcluster.FindBinDir()
	if err != nil {
		t.Skip(err)
	}
	for _, b := range []string{"kvmount", "azsim", "secrets-store-csi-driver", "provider-azure"} {
		path := filepath.Join(bin, b)
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("%s not built: run make build", b)
		}
		out, err := exec.Command(path, "--version").CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte(`"version":"v`)) {
			t.Errorf("%s --version: %v %s", b, err, out)
		}
		help, err := exec.Command(path, "--help").CombinedOutput()
		if err != nil || len(help) < 100 {
			t.Errorf("%s --help: %v %s", b, err, help)
		}
	}
}

// TestPortInUseNamesTheFlag: when a port of the environment is taken, the
// error says how to choose others.
func TestPortInUseNamesTheFlag(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("kvmount up runs as root")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	err = up(context.Background(), []string{"--base-port", strconv.Itoa(port - 100), "--dir", t.TempDir(), "--nodes", "1", "--runtime", "fake"})
	if err == nil || !strings.Contains(err.Error(), "kvmount up --base-port") {
		t.Fatalf("got %v, want the error to name kvmount up --base-port", err)
	}
}
