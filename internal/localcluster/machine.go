package localcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// machine is a node that runs real containers: its own PID, network and
// mount namespaces, held by nodeinit as their process 1, in which the node's
// containerd, kubelet and kube-proxy run. Like a machine of a real cluster,
// each node has its own address, its own localhost (so the chart's
// host-network provider binds the same ports on every node), its own /run
// and its own view of one fixed path, NodeDir, where its kubelet root and
// provider sockets live: the chart's hostPath volumes name that path and
// reach this node's directories on every node.
//
// The mounts kubelet and the driver make there propagate back to the
// node's directory as the host sees it (Node.RootDir), because the cluster
// dir's n/ subtree is a shared mount; everything else a node mounts stays
// in its namespace and goes when nodeinit ends, which takes every process
// of the node with it.
type machine struct {
	holder *process
	// pid is nodeinit's process ID as the host sees it.
	pid int
}

// nodeDir is where every node sees its own directory.
func (c *Cluster) nodeDir() string { return c.path("node") }

// shareNodeDirs makes <dir>/n a shared mount, so that mounts made in a
// node's namespace under its directory are seen here too.
func (c *Cluster) shareNodeDirs() error {
	n := c.path("n")
	for _, d := range []string{n, c.nodeDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := syscall.Mount(n, n, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", n, err)
	}
	if err := syscall.Mount("", n, "", syscall.MS_SHARED|syscall.MS_REC, ""); err != nil {
		return fmt.Errorf("share %s: %w", n, err)
	}
	return nil
}

// startMachine starts node i's namespaces and links them to the cluster's
// network.
func (c *Cluster) startMachine(ctx context.Context, i int, base string) (*machine, error) {
	name := c.cfg.NodeName(i)
	p, err := c.runPath(name+"-init", "unshare", "--fork", "--pid", "--net", "--mount", "--mount-proc",
		"--propagation", "unchanged", "--kill-child", "--", filepath.Join(c.cfg.BinDir, "nodeinit"))
	if err != nil {
		return nil, err
	}
	pid, err := childPID(ctx, p)
	if err != nil {
		return nil, err
	}
	m := &machine{holder: p, pid: pid}
	if err := c.net.attach(i, pid); err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	// Inside the node: its own /run (containerd's state and shim
	// sockets, the iptables lock), /var/log (kubelet's container log
	// links) and /var/lib (the CNI cache, /var/lib/cni, which containerd
	// does not let move: made in the node's own tmpfs, nothing is created
	// on the host outside the node's directory); NodeDir showing this
	// node's directory; its address, the other nodes' pod ranges
	// through those nodes and a route to the rest of the cluster network.
	// Pod traffic between nodes goes node to node, as on a flat network:
	// through the host it would come back by another path than it went,
	// which breaks NodePort traffic kube-proxy sends to another node's
	// pod (the reply bypasses the node that translated the request).
	setup := []string{"set -e", "mount -t tmpfs -o mode=755 tmpfs /run", "mount -t tmpfs -o mode=755 tmpfs /var/log"}
	setup = append(setup, c.ownVarLib()...)
	setup = append(setup,
		"mount --bind "+base+" "+c.nodeDir(),
		"ip link set lo up",
		"ip addr add "+c.net.nodeIP(i).String()+"/24 dev eth0",
		"ip link set eth0 up",
		"ip route add default via "+c.net.gateway().String(),
		"echo 1 > /proc/sys/net/ipv4/ip_forward")
	for j := range c.cfg.Nodes {
		if j != i {
			setup = append(setup, "ip route add "+c.net.podCIDR(j)+" via "+c.net.nodeIP(j).String())
		}
	}
	script := strings.Join(setup, "\n")
	if out, err := m.exec("sh", "-c", script).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("set up node %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return m, nil
}

// ownVarLib gives a node its own /var/lib (a tmpfs), for the CNI cache
// (/var/lib/cni, which containerd 1.6 does not let move), so that nothing
// of a node is created on the host outside the node's directory. When the
// cluster dir is under /var/lib (kvmount up's default,
// /var/lib/kvmount/<env>/c), the top directory holding it
// (/var/lib/kvmount) is bound back in place first, so that the node sees
// the cluster dir and its siblings (the environment's files that pods
// mount as host paths); its copy keeps the shared n/ subtree's propagation.
func (c *Cluster) ownVarLib() []string {
	dir := filepath.Clean(c.cfg.Dir)
	rel, ok := strings.CutPrefix(dir, "/var/lib/")
	if !ok || rel == "" {
		return []string{"mount -t tmpfs -o mode=755 tmpfs /var/lib", "mkdir -p /var/lib/cni"}
	}
	top := "/var/lib/" + strings.Split(rel, "/")[0]
	keep := "/run/.kvmount-var-lib"
	return []string{"mkdir -p " + keep, "mount --rbind " + top + " " + keep,
		"mount -t tmpfs -o mode=755 tmpfs /var/lib", "mkdir -p /var/lib/cni " + top, "mount --rbind " + keep + " " + top}
}

// exec is a command run in the node's network and mount namespaces.
func (m *machine) exec(bin string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--target", strconv.Itoa(m.pid), "--net", "--mount", "--", bin}, args...)...)
}

// runIn starts a child of the cluster inside node m: in its PID, network
// and mount namespaces.
// bin is one of the cluster's binaries, or a host command (containerd).
func (c *Cluster) runIn(m *machine, name, bin string, args ...string) (*process, error) {
	path := c.cfg.binPath(bin)
	if _, err := os.Stat(path); err != nil {
		if path, err = exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s: %w (scripts/host-deps.sh installs it)", bin, err)
		}
	}
	return c.runPath(name, "nsenter", append([]string{"--target", strconv.Itoa(m.pid), "--pid", "--net", "--mount", "--", path}, args...)...)
}

// childPID waits for the first child of p (unshare's forked nodeinit).
func childPID(ctx context.Context, p *process) (int, error) {
	path := fmt.Sprintf("/proc/%d/task/%d/children", p.pid(), p.pid())
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				return strconv.Atoi(f[0])
			}
		}
		if done, err := p.exited(); done {
			return 0, fmt.Errorf("%s exited while starting (%v):\n%s", p.name, err, p.tail(15))
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s started no node init within 10s", p.name)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
