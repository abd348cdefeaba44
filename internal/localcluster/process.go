package localcluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The kernel delivers a child's parent-death signal when the *thread* that
// forked it exits, not the process, and the Go runtime may retire threads.
// So every child is forked from one goroutine locked to its OS thread for the
// life of the process: children then die exactly when kvmount dies.
var (
	spawnOnce sync.Once
	spawnCh   chan func()
)

// onSpawnThread runs fn on the dedicated forking thread and waits for it.
func onSpawnThread(fn func()) {
	spawnOnce.Do(func() {
		spawnCh = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: this thread must outlive every child
			for f := range spawnCh {
				f()
			}
		}()
	})
	done := make(chan struct{})
	spawnCh <- func() { fn(); close(done) }
	<-done
}

// process is one child of the cluster (etcd, kube-apiserver, a kubelet, a fake
// CRI). Each runs in its own process group so that stopping it also ends
// anything it forked, and with a parent-death signal so that it cannot
// outlive a crashed or killed kvmount.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	// done is closed when the process has exited; err then holds its result.
	done chan struct{}
	err  error
}

// startProcess runs bin with args, appending its output to <logDir>/<name>.log.
func startProcess(logDir, name, bin string, args ...string) (*process, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s binary %s: %w (run `make cluster-bins`)", name, bin, err)
	}
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log for %s: %w", name, err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "\n=== %s: %s %q\n", time.Now().Format(time.RFC3339), bin, args)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	onSpawnThread(func() { err = cmd.Start() })
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, with its error.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop asks the process group to terminate and kills it after grace.
func (p *process) stop(grace time.Duration) {
	pgid := p.cmd.Process.Pid
	if ok, _ := p.exited(); !ok {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
		}
	}
	// Children that the leader left behind in its group get the same end.
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return
	}
	<-p.done
}

// pid is the process's ID, which is also its process group's ID.
func (p *process) pid() int { return p.cmd.Process.Pid }

// tail returns the last lines of the process's log, for error messages that
// must say why a component did not come up.
func (p *process) tail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ") + "\n"
}

// Process is a child run like the cluster's own components: its own
// process group, killed with kvmount, output in a log file.
type Process struct{ p *process }

// StartProcess starts bin with args, logging to <logDir>/<name>.log.
func StartProcess(logDir, name, bin string, args ...string) (*Process, error) {
	p, err := startProcess(logDir, name, bin, args...)
	if err != nil {
		return nil, err
	}
	return &Process{p: p}, nil
}

// Stop terminates the process group, killing it after ten seconds.
func (p *Process) Stop() { p.p.stop(10 * time.Second) }

// Exited reports whether the process has ended, with its error and the
// last lines of its log.
func (p *Process) Exited() (bool, error) {
	done, err := p.p.exited()
	if done {
		return true, fmt.Errorf("%s exited (%v):\n%s", p.p.name, err, p.p.tail(15))
	}
	return false, nil
}
