package localcluster

import (
	"fmt"
	"net"
	"strconv"
)

// checkPortFree fails with a message naming the port and its user when
// something already listens there, before any component is started.
func checkPortFree(port int, user string) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("port 127.0.0.1:%d for %s is taken (is another `kvmount up` running? stop it, or choose other ports): %w", port, user, err)
	}
	return l.Close()
}
