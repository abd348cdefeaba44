package localcluster

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// network is the cluster's own network when nodes are machines (real
// containers): a bridge in the current network namespace, which the control
// plane and azsim listen on, and one veth per node into the node's own
// network namespace. Everything lives inside the loopback-only namespace the
// tests run in (scripts/netns-run.sh); nothing is routed out of it, because
// it has no other interface to route to.
//
// Cluster k of the namespace uses 10.201.k.0/24 for nodes (the bridge is
// .254, node i is .i+1) and 10.(128+k).i.0/24 for node i's pods.
type network struct {
	index  int
	bridge string
	lock   *os.File
	veths  []string // bridge-side ends of the nodes' links
}

// maxNetworks bounds how many clusters with containers one namespace runs
// at a time (the index is also an octet of every address).
const maxNetworks = 64

// ErrNotIsolated is a network namespace with interfaces kvmount did not
// create: nodes with containers get addresses and routes, which must never
// be made where they could reach another network.
var ErrNotIsolated = errors.New("not in a loopback-only network namespace")

// Isolated fails (ErrNotIsolated) unless this network namespace may hold
// a cluster network: its only interfaces are loopback and the ones local
// clusters create (kvm*).
func Isolated() error { return checkIsolated() }

func checkIsolated() error {
	names, err := interfaces()
	if err != nil {
		return err
	}
	var others []string
	for _, name := range names {
		if name != "lo" && !strings.HasPrefix(name, "kvm") {
			others = append(others, name)
		}
	}
	if len(others) > 0 {
		return fmt.Errorf("%w: this one has %s. Run under scripts/netns-run.sh (make demo and make test do), or use the fake runtime (kvmount up --runtime fake)", ErrNotIsolated, strings.Join(others, ", "))
	}
	return nil
}

// interfaces lists this network namespace's interfaces. /proc/net/dev is
// the reader's namespace; /sys/class/net would be the one that mounted
// sysfs.
func interfaces() ([]string, error) {
	b, err := os.ReadFile("/proc/self/net/dev")
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		if name, _, ok := strings.Cut(line, ":"); ok && !strings.Contains(name, "|") {
			names = append(names, strings.TrimSpace(name))
		}
	}
	return names, nil
}

// openNetwork claims a free network index (an flock per namespace and
// index, preferring one derived from dir so that restarts keep addresses)
// and creates the bridge.
func openNetwork(dir string) (*network, error) {
	if err := checkIsolated(); err != nil {
		return nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
		return nil, fmt.Errorf("identify network namespace: %w", err)
	}
	locks := filepath.Join(os.TempDir(), "kvmount-net")
	if err := os.MkdirAll(locks, 0o700); err != nil {
		return nil, err
	}
	h := fnv.New32a()
	h.Write([]byte(dir))
	start := int(h.Sum32() % maxNetworks)
	for off := range maxNetworks {
		k := (start + off) % maxNetworks
		f, err := os.OpenFile(filepath.Join(locks, fmt.Sprintf("%d-%d.lock", st.Ino, k)), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close()
			continue
		}
		n := &network{index: k, bridge: "kvmbr" + strconv.Itoa(k), lock: f}
		if err := n.createBridge(); err != nil {
			n.close()
			return nil, err
		}
		return n, nil
	}
	return nil, fmt.Errorf("all %d local cluster networks of this namespace are in use", maxNetworks)
}

func (n *network) createBridge() error {
	_ = ip("link", "del", n.bridge) // left by a killed run
	return ipAll(
		[]string{"link", "add", n.bridge, "type", "bridge"},
		[]string{"addr", "add", n.gateway().String() + "/24", "dev", n.bridge},
		[]string{"link", "set", n.bridge, "up"},
	)
}

// gateway is the bridge's address: the API server and azsim are reached
// there from the nodes.
func (n *network) gateway() net.IP { return net.IPv4(10, 201, byte(n.index), 254) }

// nodeIP is node i's address.
func (n *network) nodeIP(i int) net.IP { return net.IPv4(10, 201, byte(n.index), byte(i+1)) }

// podCIDR is node i's pod range.
func (n *network) podCIDR(i int) string { return fmt.Sprintf("10.%d.%d.0/24", 128+n.index, i) }

// clusterCIDR holds every node's pod range.
func (n *network) clusterCIDR() string { return fmt.Sprintf("10.%d.0.0/16", 128+n.index) }

// vethName is the bridge-side end of node i's link.
func (n *network) vethName(i int) string { return fmt.Sprintf("kvm%dn%d", n.index, i) }

// attach links node i's network namespace (that of process pid) to the
// bridge and routes node i's pods through it.
func (n *network) attach(i, pid int) error {
	host := n.vethName(i)
	_ = ip("link", "del", host)
	n.veths = append(n.veths, host)
	return ipAll(
		[]string{"link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", strconv.Itoa(pid)},
		[]string{"link", "set", host, "master", n.bridge, "up"},
		[]string{"route", "replace", n.podCIDR(i), "via", n.nodeIP(i).String()},
	)
}

// close removes the nodes' links and the bridge, waits until the kernel
// has let go of them, and releases the index. The links are deleted here
// rather than left to go with their namespaces: a namespace is torn down
// asynchronously, and on a busy machine its veth (and the bridge it still
// holds) outlived Stop by seconds.
func (n *network) close() error {
	var errs []error
	links := n.links()
	for _, name := range links {
		if err := ip("link", "del", name); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			errs = append(errs, err)
		}
	}
	errs = append(errs, waitGone(links, 15*time.Second))
	n.lock.Close()
	return errors.Join(errs...)
}

// links are the interfaces the network made in this namespace.
func (n *network) links() []string { return append(slices.Clone(n.veths), n.bridge) }

// waitGone waits until none of names is an interface of this namespace.
func waitGone(names []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		have, err := interfaces()
		if err != nil {
			return err
		}
		left := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return !slices.Contains(have, n) })
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("network interfaces %s still exist %s after deleting them", strings.Join(left, ", "), timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func ipAll(cmds ...[]string) error {
	for _, c := range cmds {
		if err := ip(c...); err != nil {
			return err
		}
	}
	return nil
}
