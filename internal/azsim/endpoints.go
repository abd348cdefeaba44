package azsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/azsim/imds"
	"kvmount.dev/kvmount/internal/azsim/store"
	"kvmount.dev/kvmount/internal/pki"
)

// endpoint is a plain-HTTP listener on the listen host (loopback unless
// Config.Addr names another): one machine instance's IMDS, one node's NMI,
// or the IMDS or NMI of every machine told by address.
type endpoint struct {
	url  string
	http *http.Server
}

func (e *endpoint) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return e.http.Shutdown(ctx)
}

// Endpoints is what endpoints.json tells clients (the CLI, kvmount).
type Endpoints struct {
	Address        string            `json:"address"`
	CA             string            `json:"ca"`
	TenantID       string            `json:"tenantId"`
	SubscriptionID string            `json:"subscriptionId"`
	IMDS           map[string]string `json:"imds"`
	NMI            map[string]string `json:"nmi,omitempty"`
	// NodeIMDS and NodeNMI serve every machine of Config.NodeAddresses,
	// each caller as its own machine.
	NodeIMDS string `json:"nodeIMDS,omitempty"`
	NodeNMI  string `json:"nodeNMI,omitempty"`
	// TokenProxy is AKS identity binding's token proxy (https), when
	// served.
	TokenProxy string `json:"tokenProxy,omitempty"`
}

// startMachineEndpoints starts an IMDS for every instance of every machine.
func (s *Server) startMachineEndpoints(ctx context.Context) error {
	machines, err := s.machines()
	if err != nil {
		return err
	}
	for _, m := range machines {
		if err := s.ensureIMDS(m); err != nil {
			return err
		}
	}
	var clusters []store.Cluster
	if err := s.db.View(func(tx *store.Tx) error {
		var err error
		clusters, err = store.List[store.Cluster](tx, store.BucketClusters, "")
		return err
	}); err != nil {
		return err
	}
	for _, c := range clusters {
		if err := s.ensureNMI(c); err != nil {
			return err
		}
	}
	if len(s.cfg.NodeAddresses) == 0 {
		return nil
	}
	if err := s.ensureEndpoint("node:imds", s.byAddress("imds")); err != nil {
		return err
	}
	return s.ensureEndpoint("node:nmi", s.byAddress("nmi"))
}

// byAddress serves kind's endpoint (imds or nmi) of the machine the
// request comes from, told by its source address.
func (s *Server) byAddress(kind string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		name, ok := s.cfg.NodeAddresses[host]
		if !ok {
			http.Error(w, fmt.Sprintf("azsim: no machine has address %s (azsim serve --node-address NAME=%s)", host, host), http.StatusForbidden)
			return
		}
		h, err := s.machineEndpoint(kind, name)
		if err != nil {
			http.Error(w, "azsim: "+err.Error(), http.StatusNotFound)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// machineEndpoint is the handler of kind's endpoint of the machine with
// that computer name.
func (s *Server) machineEndpoint(kind, name string) (http.Handler, error) {
	key := "nmi:" + name
	if kind == "imds" {
		inst, err := s.instanceByComputerName(name)
		if err != nil {
			return nil, err
		}
		key = "imds:" + inst
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.endpoints[key]
	if !ok {
		return nil, fmt.Errorf("machine %s has no %s", name, strings.ToUpper(kind))
	}
	return e.http.Handler, nil
}

// machines lists every VM and scale set.
func (s *Server) machines() ([]store.Machine, error) {
	var machines []store.Machine
	err := s.db.View(func(tx *store.Tx) error {
		var err error
		machines, err = store.List[store.Machine](tx, store.BucketMachines, "")
		return err
	})
	return machines, err
}

// instanceByComputerName finds the machine instance (InstanceKey) with
// that computer name.
func (s *Server) instanceByComputerName(name string) (string, error) {
	machines, err := s.machines()
	if err != nil {
		return "", err
	}
	for _, m := range machines {
		if !m.ScaleSet && m.Name == name {
			return arm.InstanceKey(m, 0), nil
		}
		for i := range m.Instances {
			if m.ScaleSet && arm.ComputerName(m.Name, i) == name {
				return arm.InstanceKey(m, i), nil
			}
		}
	}
	return "", fmt.Errorf("no machine instance is named %s: %w", name, store.ErrNotFound)
}

// ensureIMDS starts the IMDS of each of m's instances that has none yet.
func (s *Server) ensureIMDS(m store.Machine) error {
	n := 1
	if m.ScaleSet {
		n = m.Instances
	}
	for i := range n {
		key := arm.InstanceKey(m, i)
		h := imds.New(imds.Config{DB: s.db, Issuer: s.issuer, Machine: store.MachineKey(m.ScaleSet, m.ResourceGroup, m.Name)})
		if err := s.ensureEndpoint("imds:"+key, h); err != nil {
			return err
		}
	}
	return nil
}

// ensureEndpoint serves h on a loopback port kept across restarts.
func (s *Server) ensureEndpoint(key string, h http.Handler) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.endpoints[key]; ok {
		return nil
	}
	ln, err := s.listenKept(key)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s.countTokens(key, h), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	s.endpoints[key] = &endpoint{url: "http://" + ln.Addr().String(), http: srv}
	return nil
}

// countTokens counts the token requests a machine's IMDS or a node's NMI
// answers (TokenStats).
func (s *Server) countTokens(key string, h http.Handler) http.Handler {
	var n *atomic.Uint64
	switch kind, _, _ := strings.Cut(key, ":"); kind {
	case "imds":
		n = &s.tokens.imds
	case "nmi":
		n = &s.tokens.nmi
	default:
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "token") {
			n.Add(1)
		}
		h.ServeHTTP(w, r)
	})
}

// TokenStats are the token requests azsim has answered since it started:
// Entra ID's token endpoint, every IMDS, every NMI, AKS's token proxy.
type TokenStats struct {
	Entra uint64 `json:"entra"`
	IMDS  uint64 `json:"imds"`
	NMI   uint64 `json:"nmi"`
	Proxy uint64 `json:"tokenProxy"`
}

type tokenCounters struct{ entra, imds, nmi, proxy atomic.Uint64 }

// TokenStats reads the counters.
func (s *Server) TokenStats() TokenStats {
	return TokenStats{Entra: s.tokens.entra.Load(), IMDS: s.tokens.imds.Load(), NMI: s.tokens.nmi.Load(), Proxy: s.tokens.proxy.Load()}
}

// listenKept listens on the port key had before, or a new one it records.
// New ports come from 30000-32767, below the kernel's ephemeral range:
// a port from that range could be taken by an outgoing connection while
// azsim restarts, and the endpoint would move.
func (s *Server) listenKept(key string) (net.Listener, error) {
	var port int
	_ = s.db.View(func(tx *store.Tx) error {
		port, _ = store.Get[int](tx, store.BucketPorts, key)
		return nil
	})
	host := s.listenHost()
	if port != 0 {
		if ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port))); err == nil {
			return ln, nil
		}
	}
	var ln net.Listener
	var err error
	for range 100 {
		port = 30000 + rand.IntN(2768)
		if ln, err = net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port))); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("listen for %s: %w", key, err)
	}
	err = s.db.Update(func(tx *store.Tx) error { return store.Put(tx, store.BucketPorts, key, port) })
	return ln, err
}

// IMDSURL is the IMDS endpoint of a machine instance (see arm.InstanceKey).
func (s *Server) IMDSURL(instance string) (string, error) {
	return s.endpointURL("imds:"+instance, "IMDS for "+strconv.Quote(instance))
}

// endpointURL is the URL of the running endpoint key, or a not-found error
// naming what.
func (s *Server) endpointURL(key, what string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.endpoints[key]
	if !ok {
		return "", fmt.Errorf("no %s: %w", what, store.ErrNotFound)
	}
	return e.url, nil
}

// Endpoints describes the running server.
func (s *Server) Endpoints() Endpoints {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := Endpoints{Address: s.Addr(), CA: s.CAPath(), TenantID: s.cloud.TenantID, SubscriptionID: s.cloud.SubscriptionID,
		IMDS: map[string]string{}, NMI: map[string]string{}}
	keys := make([]string, 0, len(s.endpoints))
	for k := range s.endpoints {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch kind, inst, _ := strings.Cut(k, ":"); kind {
		case "imds":
			e.IMDS[inst] = s.endpoints[k].url
		case "nmi":
			e.NMI[inst] = s.endpoints[k].url
		case "tokenproxy":
			e.TokenProxy = s.endpoints[k].url
		case "node":
			if inst == "imds" {
				e.NodeIMDS = s.endpoints[k].url
			} else {
				e.NodeNMI = s.endpoints[k].url
			}
		}
	}
	return e
}

// writeEndpoints records Endpoints in <data dir>/endpoints.json.
func (s *Server) writeEndpoints() error {
	b, err := json.MarshalIndent(s.Endpoints(), "", "  ")
	if err != nil {
		return err
	}
	return pki.WriteFileAtomic(filepath.Join(s.cfg.DataDir, "endpoints.json"), append(b, '\n'), 0o644)
}

// ReadEndpoints reads a data dir's endpoints.json.
func ReadEndpoints(dataDir string) (Endpoints, error) {
	var e Endpoints
	b, err := os.ReadFile(filepath.Join(dataDir, "endpoints.json"))
	if err != nil {
		return e, fmt.Errorf("azsim is not running with data dir %s (start it with `azsim serve --data-dir %s`): %w", dataDir, dataDir, err)
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("%s/endpoints.json: %w", dataDir, err)
	}
	if e.Address == "" {
		return e, errors.New("endpoints.json names no address")
	}
	return e, nil
}
