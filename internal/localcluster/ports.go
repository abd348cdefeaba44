package localcluster

import (
	"fmt"
	"net"
	"strconv"
)

// freePort asks the kernel for an unused loopback TCP port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// checkPortFree fails with a message naming the port and its user when
// something already listens there, before any component is started.
func checkPortFree(port int, user string) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("port 127.0.0.1:%d for %s is taken (is another `kvmount up` running? stop it, or choose other ports): %w", port, user, err)
	}
	return l.Close()
}
