package localcluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// cgroupFS is where the host mounts its cgroup hierarchies.
const cgroupFS = "/sys/fs/cgroup"

// A node is killed with its containers (its PID namespace ends), and
// nothing then removes their cgroups: only rmdir removes an empty cgroup,
// and runc's shim, which would, is killed too. They piled up across runs
// (3,843 per hierarchy on this machine after a day of tests), and every
// new kubelet's cAdvisor walks all of them, and asks containerd about
// each, before its node can be Ready: 8 s of each cluster start on an
// idle machine, more under load. Stop therefore reads the cgroups of each
// node's running containers before it kills the node, and removes them
// after.
//
// kubelet's cgroupRoot would put each node's containers under a root of
// its own, but with cgroupsPerQOS off (several kubelets share this host)
// kubelet passes no cgroup parent, and containerd uses /<namespace>/<id>.
// A container has that path in every hierarchy: each v1 controller's and,
// on a hybrid host such as this one, the unified one beside them (681
// were left there, unseen by a first version of this that skipped it).

// containerCgroups returns the cgroup paths of the containers running in
// the node whose namespaces process pid holds, read through the node's
// root from its containerd's state (criSocket's dir).
func containerCgroups(pid int) []string {
	return bundleCgroups(fmt.Sprintf("/proc/%d/root%s", pid, filepath.Dir(criSocket)))
}

// bundleCgroups returns linux.cgroupsPath of every task bundle's
// config.json under containerd state dir state.
func bundleCgroups(state string) []string {
	bundles, _ := filepath.Glob(filepath.Join(state, "io.containerd.runtime.v2.task", "*", "*", "config.json"))
	var paths []string
	for _, b := range bundles {
		data, err := os.ReadFile(b)
		if err != nil {
			continue
		}
		var spec struct {
			Linux struct {
				CgroupsPath string `json:"cgroupsPath"`
			} `json:"linux"`
		}
		// A systemd path (slice:prefix:name) is not a directory path.
		if json.Unmarshal(data, &spec) == nil && filepath.IsAbs(spec.Linux.CgroupsPath) && !strings.Contains(spec.Linux.CgroupsPath, ":") {
			paths = append(paths, filepath.Clean(spec.Linux.CgroupsPath))
		}
	}
	return paths
}

// hierarchies are the directories of the mounted cgroup hierarchies: the
// unified one alone on a cgroup v2 host, else every v1 controller's and,
// on a hybrid host, the unified one mounted beside them.
func hierarchies() []string {
	if _, err := os.Stat(filepath.Join(cgroupFS, "cgroup.controllers")); err == nil {
		return []string{cgroupFS}
	}
	entries, err := os.ReadDir(cgroupFS)
	if err != nil {
		return nil
	}
	var dirs []string
	for _, e := range entries {
		// Symlinks (cpu -> cpu,cpuacct) name a hierarchy listed already.
		if e.Type()&fs.ModeSymlink != 0 {
			continue
		}
		dir := filepath.Join(cgroupFS, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err == nil {
			dirs = append(dirs, dir)
		}
	}
	return dirs
}

// removeCgroups removes cgroup paths in every hierarchy. The processes
// in them were just killed and may still be exiting, so a busy cgroup is
// retried until timeout.
func removeCgroups(paths []string, timeout time.Duration) error {
	var errs []error
	deadline := time.Now().Add(timeout)
	for _, h := range hierarchies() {
		for _, p := range paths {
			if err := rmdirCgroup(filepath.Join(h, p), deadline); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func rmdirCgroup(dir string, deadline time.Time) error {
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
