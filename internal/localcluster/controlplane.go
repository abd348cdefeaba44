package localcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"kvmount.dev/kvmount/internal/pki"
)

// serviceCIDR is the cluster's service range; nothing routes to it, but the
// API server requires one.
const serviceCIDR = "10.96.0.0/24"

var loopback = []net.IP{net.ParseIP("127.0.0.1")}

// writePKI creates (or reuses) the CA, the serving and client certificates,
// the service-account key and the kubeconfigs.
func (c *Cluster) writePKI(context.Context) error {
	pkiDir := c.path("pki")
	ca, err := pki.LoadOrCreateCA(pkiDir, "kvmount local cluster CA")
	if err != nil {
		return err
	}
	c.ca = ca
	ips := append(loopback, net.ParseIP("10.96.0.1"))
	if c.net != nil {
		ips = append(ips, c.net.gateway())
	}
	if _, _, err := ca.Issue(pkiDir, "apiserver", pki.Spec{
		CommonName: "kube-apiserver", Server: true, IPs: ips,
		DNSNames: append([]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, c.cfg.APIServerNames...),
	}); err != nil {
		return err
	}
	if _, _, err := ca.Issue(pkiDir, "apiserver-kubelet-client", pki.Spec{CommonName: "kube-apiserver-kubelet-client", Orgs: []string{"system:masters"}, Client: true}); err != nil {
		return err
	}
	if _, err := pki.RSAKey(filepath.Join(pkiDir, "sa.key")); err != nil {
		return err
	}
	if c.KubeconfigPath, err = c.kubeconfig("admin", pki.Spec{CommonName: "kvmount-admin", Orgs: []string{"system:masters"}, Client: true}); err != nil {
		return err
	}
	if _, err = c.kubeconfig("controller-manager", pki.Spec{CommonName: "system:kube-controller-manager", Client: true}); err != nil {
		return err
	}
	if _, err = c.kubeconfig("scheduler", pki.Spec{CommonName: "system:kube-scheduler", Client: true}); err != nil {
		return err
	}
	return c.writeAuditPolicy()
}

// IssueServingCert issues (or reuses) a serving certificate from the
// cluster's CA, which every pod trusts through its service account's
// ca.crt: for services that stand in for parts of a managed control plane
// (AKS identity binding's token proxy).
// Names that are IP addresses go into the certificate as IP addresses.
func (c *Cluster) IssueServingCert(name string, dnsNames []string) (certPath, keyPath string, err error) {
	spec := pki.Spec{CommonName: dnsNames[0], Server: true}
	for _, n := range dnsNames {
		if ip := net.ParseIP(n); ip != nil {
			spec.IPs = append(spec.IPs, ip)
		} else {
			spec.DNSNames = append(spec.DNSNames, n)
		}
	}
	return c.ca.Issue(c.path("pki"), name, spec)
}

// ServiceAccountKubeconfig writes (once) a kubeconfig that authenticates
// as service account ns/name: a client certificate with the account's user
// name and groups, so that RBAC bindings to the service account apply to
// a process run outside a pod exactly as to the pod.
func (c *Cluster) ServiceAccountKubeconfig(ns, name string) (string, error) {
	return c.kubeconfig("sa-"+ns+"-"+name, pki.Spec{CommonName: "system:serviceaccount:" + ns + ":" + name,
		Orgs: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}, Client: true})
}

// Users whose requests the API server's audit log records
// (Cluster.AuditLog), so that their load on the API server can be read from
// the API server's own records: the Secrets Store CSI driver's service
// account and the SecretSync controller's.
const (
	DriverUser         = "system:serviceaccount:kube-system:secrets-store-csi-driver"
	SyncControllerUser = "system:serviceaccount:kube-system:secrets-store-sync-controller-manager"
)

// AuditedUsers are DriverUser and SyncControllerUser.
var AuditedUsers = []string{DriverUser, SyncControllerUser}

func (c *Cluster) writeAuditPolicy() error {
	policy := "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n  users:\n"
	for _, u := range AuditedUsers {
		policy += "  - " + u + "\n"
	}
	// Kubelets' TokenRequests: the service-account tokens of the
	// CSIDriver's tokenRequests, one per audience per pod.
	policy += "- level: Metadata\n  userGroups: [system:nodes]\n  resources: [{group: \"\", resources: [serviceaccounts/token]}]\n"
	policy += "- level: None\n"
	return pki.WriteFileAtomic(c.path("audit-policy.yaml"), []byte(policy), 0o600)
}

// AuditLog is the API server's audit log (JSON lines, one per request of
// AuditedUsers and per kubelet TokenRequest, at the Metadata level).
func (c *Cluster) AuditLog() string { return c.path("logs", "audit.log") }

// kubeconfig issues a client certificate and writes <dir>/<name>.kubeconfig.
func (c *Cluster) kubeconfig(name string, spec pki.Spec) (string, error) {
	return c.kubeconfigFor(name, spec, c.Server)
}

// kubeconfigFor is kubeconfig for clients that reach the API server at
// server (a node's components, from the node's namespace).
func (c *Cluster) kubeconfigFor(name string, spec pki.Spec, server string) (string, error) {
	certPath, keyPath, err := c.ca.Issue(c.path("pki"), name, spec)
	if err != nil {
		return "", err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kvmount"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: c.ca.CertPath}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificate: certPath, ClientKey: keyPath}
	cfg.Contexts["kvmount"] = &clientcmdapi.Context{Cluster: "kvmount", AuthInfo: name}
	cfg.CurrentContext = "kvmount"
	path := c.path(name + ".kubeconfig")
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return "", fmt.Errorf("encode kubeconfig %s: %w", path, err)
	}
	return path, pki.WriteFileAtomic(path, data, 0o600)
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	client := "http://127.0.0.1:" + strconv.Itoa(c.ports.EtcdClient)
	peer := "http://127.0.0.1:" + strconv.Itoa(c.ports.EtcdPeer)
	p, err := c.run("etcd", "etcd",
		"--name=kvmount", "--data-dir="+c.path("etcd"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=kvmount="+peer,
		"--unsafe-no-fsync", // a throwaway local store: speed over durability
		"--quota-backend-bytes=1073741824", "--log-level=warn")
	if err != nil {
		return err
	}
	return waitHTTP(ctx, p, http.DefaultClient, client+"/health", 60*time.Second)
}

func (c *Cluster) startAPIServer(ctx context.Context) error {
	pkiDir := c.path("pki")
	port := strconv.Itoa(c.ports.APIServer)
	p, err := c.run("kube-apiserver", "kube-apiserver", append(c.apiServerNetworkArgs(),
		"--etcd-servers=http://127.0.0.1:"+strconv.Itoa(c.ports.EtcdClient),
		"--secure-port="+port,
		"--cert-dir="+pkiDir,
		"--tls-cert-file="+pkiDir+"/apiserver.crt", "--tls-private-key-file="+pkiDir+"/apiserver.key",
		"--client-ca-file="+c.ca.CertPath,
		"--kubelet-client-certificate="+pkiDir+"/apiserver-kubelet-client.crt",
		"--kubelet-client-key="+pkiDir+"/apiserver-kubelet-client.key",
		"--kubelet-certificate-authority="+c.ca.CertPath,
		"--service-account-issuer="+c.Server,
		"--service-account-key-file="+pkiDir+"/sa.key",
		"--service-account-signing-key-file="+pkiDir+"/sa.key",
		"--service-cluster-ip-range="+serviceCIDR,
		"--authorization-mode=Node,RBAC",
		// Changing ownerReferences then needs delete on the object, as on
		// clusters that enable it: the driver's RBAC must work there.
		"--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
		"--audit-policy-file="+c.path("audit-policy.yaml"), "--audit-log-path="+c.AuditLog(),
		"--audit-log-format=json", "--audit-log-maxsize=200", "--audit-log-maxbackup=1",
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1")...)
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, p, c.adminHTTP(), c.Server+"/readyz", 120*time.Second); err != nil {
		return err
	}
	return c.openIssuerDiscovery(ctx)
}

// apiServerNetworkArgs place the API server on loopback, or with nodes
// that are machines on the cluster network too: the kubernetes Service then
// has the bridge address as its endpoint (kube-proxy on each node routes
// in-cluster clients there) and the API server reaches kubelets at their
// node addresses.
func (c *Cluster) apiServerNetworkArgs() []string {
	if c.net == nil {
		// The kubernetes Service's endpoints would be 127.0.0.1, which
		// Endpoints validation rejects; nothing here needs them.
		return []string{"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"}
	}
	return []string{"--bind-address=0.0.0.0", "--advertise-address=" + c.net.gateway().String(),
		"--kubelet-preferred-address-types=InternalIP,Hostname"}
}

// openIssuerDiscovery lets anonymous clients read the service-account
// issuer's OIDC discovery document and JWKS, as a workload-identity
// federation (azsim's Entra ID) must to verify a pod's token.
func (c *Cluster) openIssuerDiscovery(ctx context.Context) error {
	cs, err := c.Client()
	if err != nil {
		return err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kvmount:service-account-issuer-discovery"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:service-account-issuer-discovery"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "Group", Name: "system:unauthenticated"}},
	}
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("open service-account issuer discovery: %w", err)
	}
	return nil
}

// startControllerManager runs the controllers kvmount relies on: the garbage
// collector (pod-owned SecretProviderClassPodStatus and synced Secrets), the
// namespace lifecycle, default service accounts, the root CA config map
// that every pod's projected token volume needs, and node lifecycle, which
// lifts the not-ready taint kubelet registers with, so pods get scheduled;
// and the ones the chart and users' workloads need: DaemonSets,
// Deployments and ReplicaSets (a rollout after a secret changes), Jobs,
// EndpointSlices (Services) and ClusterRole aggregation (the chart's roles
// for namespace admins, editors and viewers).
func (c *Cluster) startControllerManager(ctx context.Context) error {
	pkiDir := c.path("pki")
	kubeconfig := c.path("controller-manager.kubeconfig")
	p, err := c.run("kube-controller-manager", "kube-controller-manager",
		"--kubeconfig="+kubeconfig,
		"--authentication-kubeconfig="+kubeconfig, "--authorization-kubeconfig="+kubeconfig,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(c.ports.ControllerManager),
		"--cert-dir="+pkiDir,
		"--leader-elect=false",
		"--controllers=garbagecollector,namespace,serviceaccount,root-ca-cert-publisher,nodelifecycle,"+
			"daemonset,deployment,replicaset,job,endpointslice,clusterrole-aggregation",
		"--root-ca-file="+c.ca.CertPath,
		"--service-account-private-key-file="+pkiDir+"/sa.key",
		// Each controller acts as its own service account with the
		// bootstrap RBAC role made for it (system:controller:*).
		"--use-service-account-credentials=true",
		"--v=1")
	if err != nil {
		return err
	}
	url := "https://127.0.0.1:" + strconv.Itoa(c.ports.ControllerManager) + "/healthz"
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // self-signed serving cert, loopback only
	return waitHTTP(ctx, p, insecure, url, 60*time.Second)
}

// startScheduler runs kube-scheduler, so that pods without nodeName (every
// manifest of the seed) are placed on a node as on any cluster.
func (c *Cluster) startScheduler(ctx context.Context) error {
	kubeconfig := c.path("scheduler.kubeconfig")
	p, err := c.run("kube-scheduler", "kube-scheduler",
		"--kubeconfig="+kubeconfig,
		"--authentication-kubeconfig="+kubeconfig, "--authorization-kubeconfig="+kubeconfig,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(c.ports.Scheduler),
		"--leader-elect=false", "--v=1")
	if err != nil {
		return err
	}
	url := "https://127.0.0.1:" + strconv.Itoa(c.ports.Scheduler) + "/healthz"
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // self-signed serving cert, loopback only
	return waitHTTP(ctx, p, insecure, url, 60*time.Second)
}

// adminHTTP is an HTTP client that trusts the cluster CA and presents the
// admin certificate.
func (c *Cluster) adminHTTP() *http.Client {
	pool := x509.NewCertPool()
	if pem, err := os.ReadFile(c.ca.CertPath); err == nil {
		pool.AppendCertsFromPEM(pem)
	}
	tlsCfg := &tls.Config{RootCAs: pool}
	if cert, err := tls.LoadX509KeyPair(c.path("pki", "admin.crt"), c.path("pki", "admin.key")); err == nil {
		tlsCfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 5 * time.Second}
}

// waitHTTP polls url until it answers 200, the process exits, or timeout.
func waitHTTP(ctx context.Context, p *process, client *http.Client, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		if done, err := p.exited(); done {
			return fmt.Errorf("%s exited while starting (%v); last log lines from %s:\n%s", p.name, err, p.logPath, p.tail(15))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s after %s (last answer: %s); see %s:\n%s", p.name, url, timeout, last, p.logPath, p.tail(15))
		case <-time.After(200 * time.Millisecond):
		}
	}
}
