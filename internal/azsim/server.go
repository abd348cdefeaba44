// Package azsim is the local Azure cloud: one process that serves Key Vault
// (one host name per vault), Entra ID, one IMDS per virtual machine and one
// aad-pod-identity NMI per node, all from one bbolt store in a data
// directory, over TLS with its own CA. This package is the server: its
// listeners, the endpoints machines and clusters bring up, and the admin
// API; the data planes live in their packages (keyvault, entra, imds, nmi,
// tokenproxy, eventgrid) and the control plane's verbs in arm. The official Azure SDK for Go works
// against it unchanged but for its transport (see Server.HTTPClient).
//
// azsim is the witness the product is tested against, so it shares no
// logic with it: its server side is written from the services' public
// behaviour, and no azsim package imports a product package
// (TestWitnessImportsNoProduct). The one shared piece is on the client
// side: NewTransport, which tools and tests use to reach azsim, is built on
// the product's internal/httpclient (CA files, host overrides); it decides
// nothing azsim checks. internal/pki (the local CAs) and internal/version
// are infrastructure, not product logic.
package azsim

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/dynamic"

	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/azsim/entra"
	"kvmount.dev/kvmount/internal/azsim/eventgrid"
	"kvmount.dev/kvmount/internal/azsim/hosts"
	"kvmount.dev/kvmount/internal/azsim/keyvault"
	"kvmount.dev/kvmount/internal/azsim/nmi"
	"kvmount.dev/kvmount/internal/azsim/store"
	"kvmount.dev/kvmount/internal/pki"
)

// The simulated cloud's names (package hosts), kept here for the tools
// and tests that name them.
const (
	VaultDNSSuffix  = hosts.VaultDNSSuffix
	VaultResource   = hosts.VaultResource
	LoginHost       = hosts.LoginHost
	LoginURL        = hosts.LoginURL
	ManagementHost  = hosts.ManagementHost
	EventGridSuffix = hosts.EventGridSuffix
	HostSuffix      = hosts.HostSuffix
)

// Config says where azsim keeps state and how it behaves.
type Config struct {
	DataDir string
	// Addr is the TLS listener (Key Vault, Entra ID, admin API);
	// 127.0.0.1:0 picks a free port.
	Addr string
	// Latency is added to every Key Vault request.
	Latency time.Duration
	// GetLimit is the per-vault GETs per 10 s before 429; 0 is 4,000.
	GetLimit int
	// TrustCAFiles are CAs of external OIDC issuers that federated
	// credentials name (the local cluster's service-account issuer).
	TrustCAFiles []string
	// Kubeconfig is the cluster NMI and `aks pod-identity add` talk to;
	// empty disables pod identity.
	Kubeconfig string
	// NodeAddresses maps a machine's network address to its computer
	// name (a scale-set instance's, an AKS node's name). With it, azsim
	// also serves one IMDS and one NMI for all those machines, on the
	// host of Addr, and answers each caller as its own machine's, which it
	// tells by the caller's address: as every Azure VM reaches its own
	// IMDS at one address, and one DaemonSet can name one endpoint.
	NodeAddresses map[string]string
	// TokenProxyCert and TokenProxyKey are the serving certificate of
	// AKS's token proxy for identity binding (issued by the cluster's CA,
	// for the server name its control plane's ID gives: see
	// ControlPlaneID). Set, azsim serves the proxy on Addr's host.
	TokenProxyCert, TokenProxyKey string
	// EventRetryScale multiplies Event Grid's retry schedule, lock and
	// validation times (0.01: the 10 s first retry comes after 100 ms),
	// for tests; 0 is 1, the service's own.
	EventRetryScale float64
	Logger          *slog.Logger
}

// Server is a running azsim.
type Server struct {
	cfg     Config
	db      *store.DB
	ca      *pki.CA
	cloud   store.Cloud
	issuer  *entra.Issuer
	kv      *keyvault.Handler
	eg      *eventgrid.Broker
	arm     *arm.Env
	http    *http.Server
	ln      net.Listener
	adminTk string

	mu        sync.Mutex // guards endpoints and expirySent
	endpoints map[string]*endpoint
	// expirySent are the near-expiry and expired events published.
	expirySent map[string]bool
	done       chan struct{}

	ent        *entra.Handler
	tokens     tokenCounters
	kubeOnce   sync.Once
	kubeClient dynamic.Interface
	kubeErr    error
	nmiCache   *nmi.Cache
}

// Start opens the store (creating the cloud's tenant, subscription and keys
// on first start), starts the TLS listener and one IMDS per known machine
// instance, and writes endpoints.json for the CLI.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("azsim: Config.DataDir is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("azsim: data dir: %w", err)
	}
	s := &Server{cfg: cfg, endpoints: map[string]*endpoint{}, done: make(chan struct{})}
	if err := s.open(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.listen(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.startMachineEndpoints(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.startTokenProxy(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.writeEndpoints(); err != nil {
		s.Close()
		return nil, err
	}
	go s.scanExpiryEvery(s.done)
	return s, nil
}

func (s *Server) open() error {
	db, err := store.Open(filepath.Join(s.cfg.DataDir, "azsim.db"))
	if err != nil {
		return err
	}
	s.db = db
	if s.cloud, err = loadOrCreateCloud(db); err != nil {
		return err
	}
	key, err := x509.ParsePKCS8PrivateKey(s.cloud.SigningKey)
	if err != nil {
		return fmt.Errorf("azsim: signing key: %w", err)
	}
	s.issuer = entra.NewIssuer(key.(*rsa.PrivateKey), nil)
	s.kv = keyvault.New(keyvault.Config{DB: db, DNSSuffix: VaultDNSSuffix, Resource: VaultResource, LoginURL: LoginURL,
		SubscriptionID: s.cloud.SubscriptionID, Verifier: s.issuer, Latency: s.cfg.Latency, GetLimit: s.cfg.GetLimit,
		Changed: s.vaultChanged})
	s.eg = eventgrid.New(eventgrid.Config{DB: db, SubscriptionID: s.cloud.SubscriptionID, Tokens: appTokens{s.issuer},
		Client: s.webhookClient(), RetryScale: s.cfg.EventRetryScale, HostSuffix: EventGridSuffix,
		ValidationBase: "https://" + ManagementHost, SourceExists: s.vaultIDExists, Logger: s.cfg.Logger})
	s.arm = arm.New(db, s.cloud, s.kv, s.eg, armHost{s})
	if s.ca, err = pki.LoadOrCreateCA(s.cfg.DataDir, "azsim local cloud CA"); err != nil {
		return err
	}
	s.adminTk, err = adminToken(filepath.Join(s.cfg.DataDir, "admin-token"))
	return err
}

// loadOrCreateCloud returns the stored account, making it on first start.
func loadOrCreateCloud(db *store.DB) (store.Cloud, error) {
	var c store.Cloud
	err := db.Update(func(tx *store.Tx) error {
		var err error
		if c, err = store.Get[store.Cloud](tx, store.BucketConfig, "cloud"); err == nil {
			return nil
		}
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		c = store.Cloud{TenantID: store.NewGUID(), SubscriptionID: store.NewGUID(), SigningKey: der}
		return store.Put(tx, store.BucketConfig, "cloud", c)
	})
	return c, err
}

// adminToken reads the admin API's bearer token, creating it once. It keeps
// other local users from changing the cloud; the file is mode 0600.
func adminToken(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(b) >= 32 {
		return strings.TrimSpace(string(b)), nil
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(b)
	return tok, pki.WriteFileAtomic(path, []byte(tok+"\n"), 0o600)
}

func (s *Server) listen() error {
	certPath, keyPath, err := s.ca.Issue(s.cfg.DataDir, "serving", pki.Spec{
		CommonName: "azsim", Server: true,
		DNSNames: []string{"*." + VaultDNSSuffix, VaultDNSSuffix, "*." + EventGridSuffix, LoginHost, ManagementHost, "localhost"},
		IPs:      s.servingIPs(),
	})
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return fmt.Errorf("azsim: serving certificate: %w", err)
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("azsim: listen on %s (is another azsim running? choose another --addr): %w", s.cfg.Addr, err)
	}
	s.ln = ln
	ent := entra.New(entra.Config{DB: s.db, Issuer: s.issuer, BaseURL: LoginURL,
		Federation: &entra.Federation{Client: s.federationClient()}})
	s.ent = ent
	s.http = &http.Server{Handler: s.route(ent), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ErrorLog:  slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelDebug)}
	go func() { _ = s.http.Serve(tls.NewListener(ln, s.http.TLSConfig)) }()
	return nil
}

// servingIPs are the addresses the serving certificate names: loopback,
// and the listener's own when it is another.
func (s *Server) servingIPs() []net.IP {
	ips := []net.IP{net.ParseIP("127.0.0.1")}
	if ip := net.ParseIP(s.listenHost()); ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
		ips = append(ips, ip)
	}
	return ips
}

// listenHost is the host every listener binds: Addr's.
func (s *Server) listenHost() string {
	host, _, err := net.SplitHostPort(s.cfg.Addr)
	if err != nil || host == "" {
		return "127.0.0.1"
	}
	return host
}

// route sends each request to the service its host names.
func (s *Server) route(ent http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		switch {
		case strings.EqualFold(host, LoginHost):
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token") {
				s.tokens.entra.Add(1)
			}
			ent.ServeHTTP(w, r)
		case strings.EqualFold(host, ManagementHost) && r.URL.Path == eventgrid.ValidatePath:
			s.eg.Handler().ServeHTTP(w, r)
		case strings.EqualFold(host, ManagementHost):
			s.serveAdmin(w, r)
		case strings.HasSuffix(strings.ToLower(host), "."+EventGridSuffix):
			s.eg.Handler().ServeHTTP(w, r)
		default:
			s.kv.ServeHTTP(w, r)
		}
		s.cfg.Logger.Debug("request", "host", host, "method", r.Method, "path", r.URL.Path)
	})
}

// federationClient trusts the system roots plus TrustCAFiles.
func (s *Server) federationClient() *http.Client { return s.trustingClient(10 * time.Second) }

// webhookClient delivers Event Grid's events: the same roots (a webhook
// needs a certificate of a CA the cloud trusts), Event Grid's 30 s.
func (s *Server) webhookClient() *http.Client { return s.trustingClient(30 * time.Second) }

// trustingClient trusts the system roots plus TrustCAFiles.
func (s *Server) trustingClient(timeout time.Duration) *http.Client {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	for _, f := range s.cfg.TrustCAFiles {
		if pem, err := os.ReadFile(f); err == nil {
			pool.AppendCertsFromPEM(pem)
		} else {
			s.cfg.Logger.Warn("cannot read trusted CA", "file", f, "err", err)
		}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: timeout}
}

// Close stops every listener and closes the store.
func (s *Server) Close() error {
	var errs []error
	if s.nmiCache != nil {
		s.nmiCache.Close()
	}
	if s.eg != nil {
		s.eg.Close()
	}
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	s.mu.Lock()
	for _, e := range s.endpoints {
		errs = append(errs, e.close())
	}
	s.endpoints = map[string]*endpoint{}
	s.mu.Unlock()
	if s.http != nil {
		// Clients keep HTTP/2 connections open; give requests in flight a
		// moment, then close whatever is left.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := s.http.Shutdown(ctx); err != nil {
			errs = append(errs, s.http.Close())
		}
		cancel()
	}
	if s.db != nil {
		errs = append(errs, s.db.Close())
	}
	return errors.Join(errs...)
}

// Addr is the TLS listener's address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// CAPath is the PEM file of azsim's CA.
func (s *Server) CAPath() string { return s.ca.CertPath }

// TenantID is the cloud's default tenant.
func (s *Server) TenantID() string { return s.cloud.TenantID }

// KeyVault is the data plane, for its request counters.
func (s *Server) KeyVault() *keyvault.Handler { return s.kv }

// VaultURL is the URL of vault name.
func VaultURL(name string) string { return hosts.VaultURL(name) }

// view runs fn in a read-only store transaction.
func (s *Server) view(fn func(tx *store.Tx) error) error { return s.db.View(fn) }

// armHost is the server as the resource providers' verbs see it.
type armHost struct{ s *Server }

func (h armHost) EnsureIMDS(m store.Machine) error        { return h.s.ensureIMDS(m) }
func (h armHost) EnsureNMI(c store.Cluster) error         { return h.s.ensureNMI(c) }
func (h armHost) IMDSURL(instance string) (string, error) { return h.s.IMDSURL(instance) }
func (h armHost) Kube() (dynamic.Interface, error)        { return h.s.kube() }
