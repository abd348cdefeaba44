// Command nodeinit is process 1 of a local node's own PID, network and mount
// namespaces: the machine that one kubelet, its containerd and its
// kube-proxy run in. It does only what an init must: it reaps the orphans
// that containerd's shims leave to it, and it ends on SIGTERM or SIGINT.
// When it ends, the kernel kills every process left in the node's PID
// namespace (shims and containers included), which is how the local cluster
// stops a node without leaving anything behind.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if os.Getpid() != 1 {
		os.Stderr.WriteString("nodeinit: run me as PID 1 of a new PID namespace (unshare --pid --fork)\n")
		os.Exit(2)
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every child that has exited, so that no zombie is left.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
