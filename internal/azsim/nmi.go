package azsim

import (
	"fmt"
	"net/http"
	"strconv"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/azsim/nmi"
	"kvmount.dev/kvmount/internal/azsim/store"
)

// kube returns the dynamic client for the cluster NMI and pod-identity
// verbs talk to, made from Config.Kubeconfig on first use.
func (s *Server) kube() (dynamic.Interface, error) {
	if s.cfg.Kubeconfig == "" {
		return nil, &AdminError{Status: http.StatusBadRequest, Code: "InvalidArgument", Message: "azsim serve was started without --kubeconfig: pod identity needs the cluster's API server"}
	}
	s.kubeOnce.Do(func() {
		cfg, err := clientcmd.BuildConfigFromFlags("", s.cfg.Kubeconfig)
		if err != nil {
			s.kubeErr = fmt.Errorf("kubeconfig %s: %w", s.cfg.Kubeconfig, err)
			return
		}
		// NMI reads from watches; the admin verbs write a few objects.
		cfg.QPS, cfg.Burst = 50, 100
		s.kubeClient, s.kubeErr = dynamic.NewForConfig(cfg)
		if s.kubeErr == nil {
			s.nmiCache = nmi.NewCache(s.kubeClient)
		}
	})
	return s.kubeClient, s.kubeErr
}

// ensureNMI starts an NMI for each node (scale-set instance) of cluster c,
// backed by that instance's IMDS. Without a kubeconfig there is no NMI.
func (s *Server) ensureNMI(c store.Cluster) error {
	if s.cfg.Kubeconfig == "" {
		return nil
	}
	if _, err := s.kube(); err != nil {
		return err
	}
	var m store.Machine
	if err := s.view(func(tx *store.Tx) error {
		var err error
		m, err = store.Get[store.Machine](tx, store.BucketMachines, store.MachineKey(true, c.NodeResourceGroup, c.ScaleSet))
		return err
	}); err != nil {
		return err
	}
	for i := range m.Instances {
		imdsURL, err := s.IMDSURL(arm.InstanceKey(m, i))
		if err != nil {
			return err
		}
		node := arm.ComputerName(m.Name, i)
		if err := s.ensureEndpoint("nmi:"+node, nmi.New(nmi.Config{Cache: s.nmiCache, IMDSURL: imdsURL, Node: node, Address: s.nodeAddress(node)})); err != nil {
			return err
		}
	}
	return nil
}

// nodeAddress is the network address of the machine with that computer
// name (Config.NodeAddresses), or "".
func (s *Server) nodeAddress(name string) string {
	for addr, n := range s.cfg.NodeAddresses {
		if n == name {
			return addr
		}
	}
	return ""
}

// NMIURL is the NMI endpoint of a node (a scale-set instance's computer name).
func (s *Server) NMIURL(node string) (string, error) {
	return s.endpointURL("nmi:"+node, "NMI for node "+strconv.Quote(node))
}
