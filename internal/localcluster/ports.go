package localcluster

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// checkPortFree fails with a message naming the port and its user when
// something already listens there, before any component is started.
func checkPortFree(port int, user string) error {
	return CheckPortFree(port, user)
}

// ErrPortInUse is a port the environment needs that something else holds.
var ErrPortInUse = errors.New("port in use")

// CheckPortFree fails with ErrPortInUse when 127.0.0.1:port is taken.
func CheckPortFree(port int, user string) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("%w: 127.0.0.1:%d for %s is taken (%v)", ErrPortInUse, port, user, err)
	}
	return l.Close()
}
