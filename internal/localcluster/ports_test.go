package localcluster

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestPortsFromBase(t *testing.T) {
	p := portsFrom(20000, 2)
	want := Ports{APIServer: 20000, EtcdClient: 20001, EtcdPeer: 20002, ControllerManager: 20003,
		Kubelet: []int{20010, 20012}, KubeletHealthz: []int{20011, 20013}}
	if p.APIServer != want.APIServer || p.EtcdClient != want.EtcdClient || p.EtcdPeer != want.EtcdPeer ||
		p.ControllerManager != want.ControllerManager || p.Kubelet[1] != 20012 || p.KubeletHealthz[1] != 20013 {
		t.Errorf("got %+v, want %+v", p, want)
	}
}

func TestPortTakenIsNamed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	c := Config{Nodes: 1, BasePort: port}
	_, err = c.ports()
	if err == nil {
		t.Fatal("check passed with the API server port taken")
	}
	if !strings.Contains(err.Error(), "kube-apiserver") || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Errorf("error %q does not name kube-apiserver and port %d", err, port)
	}
}
