package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"kvmount.dev/kvmount/internal/localcluster"
	"kvmount.dev/kvmount/internal/localenv"
)

// isolatedEnvVar marks a kvmount re-executed in its own network namespace.
const isolatedEnvVar = "KVMOUNT_ISOLATED"

// isolate re-executes this command in a new network namespace with only
// loopback, when nodes with containers need one and this namespace is not
// one: their cluster network must never reach anything else. It returns
// only when no re-execution is needed; otherwise it exits with the child's
// status.
func isolate(runtime localcluster.Runtime) error {
	if runtime != localcluster.RuntimeContainerd || localcluster.Isolated() == nil {
		return nil
	}
	if os.Getenv(isolatedEnvVar) != "" {
		return localcluster.Isolated()
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "kvmount: starting in a new network namespace with only loopback (the local nodes' network lives there; use `kvmount run -- CMD` to reach it)")
	cmd := exec.Command("unshare", append([]string{"--net", "--", "sh", "-c", `ip link set lo up && exec "$0" "$@"`, self}, os.Args[1:]...)...)
	// Ctrl-C reaches the child too (same process group), which stops
	// cleanly; this process only waits for it.
	return reexec(cmd, "start in a new network namespace (unshare, from util-linux)")
}

// reexec runs cmd (this command again, inside another network namespace)
// and exits with its status; it returns only when cmd could not run.
func reexec(cmd *exec.Cmd, what string) error {
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), isolatedEnvVar+"=1")
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		os.Exit(exit.ExitCode())
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	os.Exit(0)
	return nil
}

// runIn is `kvmount run [--dir DIR] -- CMD ARGS...`: CMD in the running
// environment's network namespace, with KUBECONFIG and AZSIM_DATA_DIR set
// and bin/ first on PATH, so that kubectl and azsim reach it.
func runIn(args []string) error {
	args, dir, err := runArgs(args, os.Stdout)
	if err != nil {
		return err
	}
	st, err := localenv.ReadState(dir)
	if err != nil {
		return err
	}
	pid, err := envPID(dir)
	if err != nil {
		return err
	}
	bin, err := localcluster.FindBinDir()
	if err != nil {
		return err
	}
	cmd := exec.Command("nsenter", append([]string{"--net=/proc/" + strconv.Itoa(pid) + "/ns/net", "--"}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "KUBECONFIG="+st.Kubeconfig, "AZSIM_DATA_DIR="+st.AzsimDir, "PATH="+bin+string(filepath.ListSeparator)+os.Getenv("PATH"))
	err = cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		os.Exit(exit.ExitCode())
	}
	return err
}

// runArgs parses `[--dir DIR] [--] COMMAND [ARGS...]`: flags stop at "--"
// or at the command, so the command's own flags are left alone.
func runArgs(args []string, out io.Writer) ([]string, string, error) {
	const synopsis = "kvmount run [--dir DIR] -- COMMAND [ARGS...]"
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	dir := fs.String("dir", "/var/lib/kvmount/env", "the environment's directory")
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		printVerbUsage(out, fs, synopsis)
		return nil, "", errHelp
	}
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() == 0 {
		return nil, "", fmt.Errorf("%w: %s", errUsage, synopsis)
	}
	return fs.Args(), *dir, nil
}

// envPID is the process holding the environment's lock, if it runs.
func envPID(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "lock"))
	if err != nil {
		return 0, fmt.Errorf("no environment in %s: %w", dir, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || syscall.Kill(pid, 0) != nil {
		return 0, fmt.Errorf("the environment in %s is not running (start it with kvmount up --dir %s)", dir, dir)
	}
	return pid, nil
}

// enterEnvNet re-executes this command in the network namespace of the
// environment in dir when this process is in another one (it exits with
// the child's status); it returns when already there, or when the
// environment runs in this one (the fake runtime).
func enterEnvNet(dir string) error {
	if os.Getenv(isolatedEnvVar) != "" {
		return nil
	}
	pid, err := envPID(dir)
	if err != nil {
		return err
	}
	here, err1 := os.Readlink("/proc/self/ns/net")
	there, err2 := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err1 != nil || err2 != nil || here == there {
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command("nsenter", append([]string{"--net=/proc/" + strconv.Itoa(pid) + "/ns/net", "--", self}, os.Args[1:]...)...)
	return reexec(cmd, "enter the environment's network namespace (nsenter, as root)")
}
