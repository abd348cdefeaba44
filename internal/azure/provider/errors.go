package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"kvmount.dev/kvmount/internal/azure/config"
	"kvmount.dev/kvmount/internal/azure/identity"
	"kvmount.dev/kvmount/internal/azure/identitybinding"
	"kvmount.dev/kvmount/internal/azure/keyvault"
)

// identityError is a failure to get the mount's token from endpoint.
type identityError struct {
	mode     config.Mode
	endpoint string
	err      error
}

func (e *identityError) Error() string { return fmt.Sprintf("%s: %v", e.mode, e.err) }
func (e *identityError) Unwrap() error { return e.err }

// toStatus is the one place where errors become gRPC statuses: the code
// says what kind of problem it is, the message what to do about it. No
// message carries secret material: Key Vault, Entra ID, IMDS and NMI error
// bodies hold none, and object contents never enter an error.
func toStatus(err error, cfg config.Config, who identity.Principal) error {
	var ce *config.Error
	var ces config.Errors
	var ie *identityError
	var me *keyvault.MountError
	var oe *keyvault.ObjectError
	switch {
	case errors.As(err, &ces):
		return status.Error(codes.InvalidArgument, ces.Error())
	case errors.As(err, &ce):
		return status.Error(codes.InvalidArgument, ce.Error())
	case errors.As(err, &ie):
		return identityStatus(ie, cfg)
	case errors.As(err, &me):
		return mountStatus(me, cfg, who)
	case errors.As(err, &oe):
		return objectStatus(oe, cfg, who)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "fetching from key vault %q did not finish in time: check that the node can reach %s and its identity endpoint (firewall, DNS, private endpoint)", cfg.VaultName, cfg.Cloud.VaultURL(cfg.VaultName))
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "the mount was cancelled by the driver")
	}
	return status.Errorf(codes.Internal, "mount of key vault %q failed: %v", cfg.VaultName, err)
}

// maxMessage bounds a mount's error message. It becomes a pod Event, whose
// message the driver keeps within the API server's 1,024 bytes together
// with its own prefix (kubelet's prefix is about 120 bytes more).
const maxMessage = 800

// mountStatus reports every object that failed, each with its own reason
// and fix, so that a user fixes them all in one round; the code is the
// first failure's. Objects are kept whole: those that do not fit are
// counted at the end ("(and N more)"), never cut in the middle.
func mountStatus(me *keyvault.MountError, cfg config.Config, who identity.Principal) error {
	if len(me.Objects) == 1 {
		return objectStatus(me.Objects[0], cfg, who)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d objects failed:", len(me.Objects))
	var first codes.Code
	for i, oe := range me.Objects {
		st := status.Convert(objectStatus(oe, cfg, who))
		if i == 0 {
			first = st.Code()
		}
		item := fmt.Sprintf(" (%d) %s;", i+1, st.Message())
		more := fmt.Sprintf(" (and %d more)", len(me.Objects)-i)
		if i > 0 && b.Len()+len(item)+len(" (and 99 more)") > maxMessage {
			b.WriteString(more)
			break
		}
		b.WriteString(item)
	}
	return status.Error(first, strings.TrimSuffix(b.String(), ";"))
}

// nmiTransient finds, in NMI's explanation, IMDS answering 429 or 5xx
// (NMI reports any failure of its IMDS request as 403 with IMDS's answer in
// the text: azsim "IMDS answered 429", aad-pod-identity's ADAL "Status Code
// = '429'").
var nmiTransient = regexp.MustCompile(`(?i)(answered (429|5\d\d)\b|status code = '?(429|5\d\d)\b|too many requests|throttl)`)

// identityStatus explains why the mount's identity got no token.
func identityStatus(ie *identityError, cfg config.Config) error {
	msg := ie.err.Error()
	var nmi *identity.NMIError
	var af *azidentity.AuthenticationFailedError
	switch {
	case errors.As(ie.err, &nmi) && nmi.Status == http.StatusNotFound:
		return status.Errorf(codes.FailedPrecondition, "pod identity: NMI found no identity for pod %s/%s (%s). Label the pod aadpodidbinding: <selector> matching an AzureIdentityBinding in namespace %s (az aks pod-identity add creates one), or use workload identity", cfg.Pod.Namespace, cfg.Pod.Name, nmi.Body, cfg.Pod.Namespace)
	case errors.As(ie.err, &nmi) && nmiTransient.MatchString(nmi.Body):
		return status.Errorf(codes.Unavailable, "pod identity: NMI could not get a token for pod %s/%s because this node's IMDS is throttling or failing (%d: %s); kubelet will retry (fewer pods starting at once on the node lowers the load)", cfg.Pod.Namespace, cfg.Pod.Name, nmi.Status, nmi.Body)
	case errors.As(ie.err, &nmi):
		return status.Errorf(codes.PermissionDenied, "pod identity: NMI could not get a token for pod %s/%s (%d: %s). The pod's AzureIdentity must be assigned to this node's scale set (az vmss identity assign)", cfg.Pod.Namespace, cfg.Pod.Name, nmi.Status, nmi.Body)
	case cfg.Mode == config.ModeIdentityBinding && (errors.Is(ie.err, identitybinding.ErrNotConfigured) || errors.Is(ie.err, identity.ErrNoTokenProxy)):
		return status.Errorf(codes.FailedPrecondition, "%v: run the provider in its DaemonSet (it finds the proxy through the API server), or set --token-proxy-url and --sni-name", ie.err)
	case cfg.Mode == config.ModeIdentityBinding && errors.As(ie.err, &af) && af.RawResponse != nil && af.RawResponse.StatusCode == http.StatusForbidden:
		return status.Errorf(codes.PermissionDenied, "identity binding: the AKS token proxy refused service account %s/%s for managed identity %s (%s). Allow it with a ClusterRole (verbs [use-managed-identity], apiGroups [cid.wi.aks.azure.com], resources [%s]) bound to the service account, and make sure the cluster has an identity binding for the identity (az aks identity-binding create)",
			cfg.Pod.Namespace, cfg.Pod.ServiceAccount, cfg.ClientID, proxyReason(af), cfg.ClientID)
	case cfg.Mode == config.ModeIdentityBinding && errors.As(ie.err, &af) && af.RawResponse != nil && af.RawResponse.StatusCode < 500:
		return status.Errorf(codes.Unauthenticated, "identity binding: the AKS token proxy refused the token request for managed identity %s: %s", cfg.ClientID, proxyReason(af))
	case strings.Contains(msg, "Multiple user assigned identities exist"):
		return status.Errorf(codes.FailedPrecondition, "VM managed identity: this node's VM or scale set has several user-assigned identities and no system-assigned one, so IMDS cannot choose: set userAssignedIdentityID in SecretProviderClass to the client ID of the identity that may read key vault %q (for the AKS add-on identity: az aks show -g <rg> -n <cluster> --query addonProfiles.azureKeyvaultSecretsProvider.identity.clientId -o tsv)", cfg.VaultName)
	case strings.Contains(msg, "Identity not found"):
		return status.Errorf(codes.FailedPrecondition, "VM managed identity: identity %q is not assigned to this node's VM or scale set: assign it (az vmss identity assign -g <node-resource-group> -n <vmss> --identities <identity-resource-id>), or fix userAssignedIdentityID; a workload identity's client ID goes in clientID instead", orSystem(cfg.UserAssignedIdentityID))
	case strings.Contains(msg, "AADSTS70021"):
		return status.Errorf(codes.PermissionDenied, "workload identity: client %s has no federated credential for service account %s/%s: az identity federated-credential create --name <name> --identity-name <identity> -g <rg> --issuer <cluster OIDC issuer> --subject system:serviceaccount:%s:%s --audiences %s",
			cfg.ClientID, cfg.Pod.Namespace, cfg.Pod.ServiceAccount, cfg.Pod.Namespace, cfg.Pod.ServiceAccount, config.WorkloadIdentityAudience)
	case strings.Contains(msg, "AADSTS7000215"):
		return status.Errorf(codes.Unauthenticated, "service principal %s: the clientsecret in the nodePublishSecretRef Secret is wrong or expired: put the current secret in it", cfg.SPClientID)
	case strings.Contains(msg, "AADSTS700016"):
		return status.Errorf(codes.Unauthenticated, "%s: application %s does not exist in tenant %s: check the client ID and tenantId", cfg.Mode, clientOf(cfg), cfg.TenantID)
	case unavailable(ie.err):
		return status.Errorf(codes.Unavailable, "%s: the identity endpoint %s is unavailable: %s; kubelet will retry", cfg.Mode, ie.endpoint, unavailableReason(ie.err))
	case errors.As(ie.err, &af), strings.Contains(msg, "AADSTS"):
		return status.Errorf(codes.Unauthenticated, "%s: Entra ID refused the token request: %s", cfg.Mode, aadReason(msg))
	}
	return status.Errorf(codes.Unauthenticated, "%s: no token: %s", cfg.Mode, firstLine(msg))
}

// objectStatus explains a Key Vault failure for one object.
func objectStatus(oe *keyvault.ObjectError, cfg config.Config, who identity.Principal) error {
	var re *azcore.ResponseError
	var fe *keyvault.FormatError
	var te *keyvault.ThrottledError
	o := oe.Object
	if oe.Principal != (identity.Principal{}) {
		who = oe.Principal
	}
	// The object's own vault and tenant (objects may name their own).
	cfg.VaultName, cfg.TenantID = cfg.VaultOf(o), cfg.TenantOf(o)
	what := fmt.Sprintf("%s %q", o.Type, o.Name)
	if o.Version != "" {
		what += " version " + o.Version
	}
	switch {
	case errors.As(oe.Err, &fe):
		return status.Errorf(codes.InvalidArgument, "%v", fe)
	case errors.As(oe.Err, &te):
		return status.Errorf(codes.ResourceExhausted, "key vault %q is throttling requests (429) and asked to wait until %s, past this mount's deadline, reading %s: kubelet will retry; fewer pods starting at once or a longer --rotation-poll-interval lowers the load", cfg.VaultName, te.Until.UTC().Format(time.RFC3339), what)
	case errors.Is(oe.Err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "reading %s from key vault %q did not finish in time: check that the node can reach %s (firewall, DNS, private endpoint)", what, cfg.VaultName, cfg.Cloud.VaultURL(cfg.VaultName))
	case errors.Is(oe.Err, context.Canceled):
		return status.Errorf(codes.Canceled, "reading %s was cancelled by the driver", what)
	}
	if !errors.As(oe.Err, &re) {
		if isNetwork(oe.Err) {
			return status.Errorf(codes.Unavailable, "key vault %q is unreachable reading %s: %v (check DNS, firewall and private endpoint for %s)", cfg.VaultName, what, rootCause(oe.Err), cfg.Cloud.VaultURL(cfg.VaultName))
		}
		return status.Errorf(codes.Internal, "key vault %q, %s: %v", cfg.VaultName, what, oe.Err)
	}
	body := re.Error()
	switch {
	case re.StatusCode == http.StatusForbidden && strings.Contains(body, "is not allowed on a disabled"):
		return status.Errorf(codes.FailedPrecondition, "%s in key vault %q is disabled: enable it, or pin an enabled version with objectVersion", what, cfg.VaultName)
	case re.StatusCode == http.StatusForbidden:
		return status.Error(codes.PermissionDenied, forbidden(body, what, o, cfg, who))
	case re.StatusCode == http.StatusNotFound:
		return status.Errorf(codes.NotFound, "%s does not exist in key vault %q: check objectName and objectVersion, or create it", what, cfg.VaultName)
	case re.StatusCode == http.StatusUnauthorized && strings.Contains(body, "AKV10032"):
		return status.Errorf(codes.Unauthenticated, "key vault %q belongs to another tenant than the identity's token (%s): the identity must be in the vault's tenant, and tenantId must be the vault's", cfg.VaultName, who.TenantID)
	case re.StatusCode == http.StatusUnauthorized:
		return status.Errorf(codes.Unauthenticated, "key vault %q refused the token of %s: %s", cfg.VaultName, principalName(who), kvMessage(body))
	case re.StatusCode == http.StatusTooManyRequests:
		return status.Errorf(codes.ResourceExhausted, "key vault %q is throttling requests (429) reading %s, and kept doing so while this mount waited: kubelet will retry; fewer pods starting at once or a longer --rotation-poll-interval lowers the load", cfg.VaultName, what)
	case re.StatusCode >= 500:
		return status.Errorf(codes.Unavailable, "key vault %q answered %d reading %s: kubelet will retry", cfg.VaultName, re.StatusCode, what)
	}
	return status.Errorf(codes.InvalidArgument, "key vault %q refused reading %s: %s", cfg.VaultName, what, kvMessage(body))
}

// forbidden names the principal, vault, kind and missing permission, and
// gives the command that grants it.
func forbidden(body, what string, o config.Object, cfg config.Config, who identity.Principal) string {
	perms := "get"
	if o.History > 1 {
		perms = "get list"
	}
	if strings.Contains(body, "ForbiddenByRbac") {
		role := map[string]string{config.TypeSecret: "Key Vault Secrets User", config.TypeKey: "Key Vault Crypto User", config.TypeCert: "Key Vault Certificate User"}[o.Type]
		return fmt.Sprintf("%s may not read %s in key vault %q, which uses Azure RBAC: az role assignment create --role %q --assignee %s --scope %s",
			principalName(who), what, cfg.VaultName, role, assignee(who), vaultScope(body, cfg))
	}
	flag := map[string]string{config.TypeSecret: "--secret-permissions", config.TypeKey: "--key-permissions", config.TypeCert: "--certificate-permissions"}[o.Type]
	return fmt.Sprintf("%s may not read %s in key vault %q: its access policies grant no %s %s permission: az keyvault set-policy -n %s %s %s --spn %s",
		principalName(who), what, cfg.VaultName, kindWord(o.Type), perms, cfg.VaultName, flag, perms, assignee(who))
}

var resourceRE = regexp.MustCompile(`Resource: '(/subscriptions/[^']+/vaults/[^/']+)`)

func vaultScope(body string, cfg config.Config) string {
	if m := resourceRE.FindStringSubmatch(body); m != nil {
		return m[1]
	}
	return "$(az keyvault show -n " + cfg.VaultName + " --query id -o tsv)"
}

func kindWord(t string) string {
	return map[string]string{config.TypeSecret: "secret", config.TypeKey: "key", config.TypeCert: "certificate"}[t]
}

func principalName(p identity.Principal) string {
	if p.ClientID == "" {
		return "the identity (object ID " + p.ObjectID + ")"
	}
	return fmt.Sprintf("identity %s (object ID %s)", p.ClientID, p.ObjectID)
}

func assignee(p identity.Principal) string {
	if p.ClientID != "" {
		return p.ClientID
	}
	return p.ObjectID
}

func clientOf(cfg config.Config) string {
	if cfg.Mode == config.ModeServicePrincipal {
		return cfg.SPClientID
	}
	return cfg.ClientID
}

func orSystem(id string) string {
	if id == "" {
		return "(system-assigned)"
	}
	return id
}

var kvMessageRE = regexp.MustCompile(`"message":\s*"([^"]*)"`)

// kvMessage extracts Key Vault's error message from a response error.
func kvMessage(body string) string {
	if m := kvMessageRE.FindStringSubmatch(body); m != nil {
		return m[1]
	}
	return firstLine(body)
}

var aadRE = regexp.MustCompile(`AADSTS\d+: [^"\\\n]*`)

func aadReason(msg string) string {
	if m := aadRE.FindString(msg); m != "" {
		return m
	}
	return firstLine(msg)
}

// proxyReason is the token proxy's error_description (its body is an
// Entra-shaped error: no secret).
func proxyReason(af *azidentity.AuthenticationFailedError) string {
	msg := af.Error()
	if i := strings.Index(msg, `"error_description":`); i >= 0 {
		rest := msg[i+len(`"error_description":`):]
		var d string
		if err := json.NewDecoder(strings.NewReader(rest)).Decode(&d); err == nil {
			return d
		}
	}
	return aadReason(msg)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// unavailable reports whether a token request failed because the endpoint
// could not serve it (down, unreachable, overloaded, too slow), not
// because it refused the identity: kubelet's retry may then succeed.
func unavailable(err error) bool {
	var ie *identity.IMDSError
	var ir *identity.IMDSRefusal
	var af *azidentity.AuthenticationFailedError
	switch {
	case errors.As(err, &ir):
		return ir.Transient()
	case errors.As(err, &af) && af.RawResponse != nil:
		c := af.RawResponse.StatusCode
		return c >= 500 || c == http.StatusTooManyRequests
	case errors.As(err, &ie), isNetwork(err), errors.Is(err, context.DeadlineExceeded), imdsRE.MatchString(err.Error()):
		return true
	}
	return false
}

// imdsRE finds the provider's own IMDS transport error inside azidentity's
// message, which keeps only its text: "IMDS at <endpoint>: <cause>".
var imdsRE = regexp.MustCompile(`IMDS at \S+: (.*?)(\. To troubleshoot|$)`)

// unavailableReason says why, without quoting the SDK's request line
// (which names the link-local address the request was not sent to).
func unavailableReason(err error) string {
	var af *azidentity.AuthenticationFailedError
	var ir *identity.IMDSRefusal
	if errors.As(err, &ir) {
		return fmt.Sprintf("it answered %d %s (%s)", ir.Status, http.StatusText(ir.Status), ir.Description)
	}
	if errors.As(err, &af) && af.RawResponse != nil {
		return fmt.Sprintf("it answered %d %s", af.RawResponse.StatusCode, http.StatusText(af.RawResponse.StatusCode))
	}
	if m := imdsRE.FindStringSubmatch(err.Error()); m != nil {
		return m[1]
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "it did not answer in time"
	}
	return rootCause(err).Error()
}

func isNetwork(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe)
}

func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// codeOf is an error's gRPC code (OK for nil), for logs and metrics.
func codeOf(err error) codes.Code {
	return status.Code(err)
}
