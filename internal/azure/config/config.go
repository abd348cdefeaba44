// Package config turns a provider Mount request — the SecretProviderClass
// parameters merged with kubelet's pod attributes, the nodePublishSecretRef
// secrets and the default file permission, all JSON strings on the wire —
// into one typed, validated Config, once, at the edge. Every parameter keeps
// the upstream Azure provider's name, default and meaning; what upstream
// accepts silently and then gets wrong (a bad filePermission writing mode 0,
// duplicate file names, traversal aliases, unknown object types found only at
// fetch time) is refused here with an error naming the field, the object
// and the fix.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"kvmount.dev/kvmount/internal/refresh"
)

// Mode is how the provider gets an identity for Key Vault.
type Mode int

// The identity modes, in upstream's order of precedence.
const (
	ModePodIdentity Mode = iota + 1
	ModeVMManagedIdentity
	ModeWorkloadIdentity
	ModeServicePrincipal
	// ModeIdentityBinding is AKS identity binding (useAzureTokenProxy):
	// workload identity's client assertion, sent to AKS's token proxy.
	ModeIdentityBinding
)

func (m Mode) String() string {
	return map[Mode]string{ModePodIdentity: "pod identity", ModeVMManagedIdentity: "VM managed identity",
		ModeWorkloadIdentity: "workload identity", ModeServicePrincipal: "service principal", ModeIdentityBinding: "identity binding"}[m]
}

// WorkloadIdentityAudience is the audience of the pod service-account token
// exchanged for an Entra token in workload-identity mode.
const WorkloadIdentityAudience = "api://AzureADTokenExchange"

// IdentityBindingAudience is the audience of the pod service-account token
// identity binding presents to AKS's token proxy.
const IdentityBindingAudience = "api://AKSIdentityBinding"

// Config is one mount's typed configuration.
type Config struct {
	Mode Mode
	// UserAssignedIdentityID picks a VM's user-assigned identity by client
	// ID or ARM resource ID; empty lets IMDS choose (system-assigned first).
	UserAssignedIdentityID string
	// ClientID is the workload identity's (or identity binding's
	// user-assigned identity's) client ID.
	ClientID  string
	TenantID  string
	VaultName string
	Cloud     Cloud
	Objects   []Object
	Pod       Pod
	// ServiceAccountToken is the pod's token for WorkloadIdentityAudience
	// (workload identity) or IdentityBindingAudience (identity binding).
	ServiceAccountToken string
	// SPClientID and SPClientSecret come from nodePublishSecretRef.
	SPClientID, SPClientSecret string
	// DefaultMode is the driver's file permission for objects without
	// their own filePermission.
	DefaultMode os.FileMode
	// Warnings are what the class does that upstream accepts but is
	// probably a mistake; the mount goes ahead and the pod is told.
	Warnings []Warning
	// Refresh is set when the driver or the sync controller pushes a
	// refresh (a change event, a user's request): which objects to read
	// afresh, the others being served as the versions mounted.
	Refresh *refresh.Request
}

// Warning is one such thing, with the object it concerns ("index name";
// empty for the class) and the fix.
type Warning struct {
	Object, Msg string
}

func (w Warning) String() string {
	if w.Object != "" {
		return fmt.Sprintf("SecretProviderClass objects[%s]: %s", w.Object, w.Msg)
	}
	return "SecretProviderClass: " + w.Msg
}

func (c *Config) warn(w Warning) { c.Warnings = append(c.Warnings, w) }

// Pod is the pod the volume is for.
type Pod struct {
	Name, Namespace, UID, ServiceAccount string
}

// Defaults are the provider-wide settings parameters fall back to.
type Defaults struct {
	// CloudName is used when the class leaves cloudName empty.
	CloudName string
	// CloudEnvFile is used when the class leaves cloudEnvFileName empty.
	CloudEnvFile string
}

// Error is a configuration error: a bad SecretProviderClass or request.
// Its message names the parameter (and object) and says how to fix it.
type Error struct {
	Field  string
	Object string
	Msg    string
}

func (e *Error) Error() string {
	if e.Object != "" {
		return fmt.Sprintf("SecretProviderClass objects[%s]: %s", e.Object, e.Msg)
	}
	return "SecretProviderClass parameter " + e.Field + ": " + e.Msg
}

// Limits that keep one mount within what the driver can carry (its
// default response limit is 4 MiB); upstream has none, and fails past it.
const (
	maxObjectsText = 1 << 20
	maxObjects     = 10000
	maxHistory     = 1000
)

var (
	vaultNameRE  = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$`)
	objectNameRE = regexp.MustCompile(`^[0-9a-zA-Z-]{1,127}$`)
	versionRE    = regexp.MustCompile(`^[0-9a-fA-F]{32}$`)
	// tenantRE is what Entra ID (and azidentity) accept as a tenant: an ID
	// or a domain, which become a path element of the authority URL.
	tenantRE = regexp.MustCompile(`^[0-9a-zA-Z][0-9a-zA-Z.-]{0,252}$`)
)

// checkVaultName refuses what cannot be a key vault's name.
func checkVaultName(name string) error {
	if !vaultNameRE.MatchString(name) || strings.Contains(name, "--") {
		return fmt.Errorf("%q is not a key vault name: use 3-24 letters, digits and hyphens, starting with a letter and ending with a letter or digit (the name, not the URL)", name)
	}
	return nil
}

// VaultOf is the key vault object o is read from.
func (c Config) VaultOf(o Object) string {
	if o.Vault != "" {
		return o.Vault
	}
	return c.VaultName
}

// TenantOf is the tenant of the key vault object o is read from.
func (c Config) TenantOf(o Object) string {
	if o.Tenant != "" {
		return o.Tenant
	}
	return c.TenantID
}

// Parameters are the SecretProviderClass parameters the Azure provider
// reads (upstream's names); others are ignored, as upstream ignores them,
// and `kvmount check` names the nearest of these.
var Parameters = []string{"usePodIdentity", "useVMManagedIdentity", "useAzureTokenProxy", "userAssignedIdentityID", "clientID",
	"keyvaultName", "cloudName", "cloudEnvFileName", "tenantId", "tenantID", "objects"}

// Parse builds a Config from a Mount request's JSON strings.
func Parse(attributesJSON, secretsJSON, permission string, d Defaults) (Config, error) {
	attrs, err := decodeMap("attributes", attributesJSON)
	if err != nil {
		return Config{}, err
	}
	secrets, err := decodeMap("secrets", secretsJSON)
	if err != nil {
		return Config{}, err
	}
	var c Config
	if c.DefaultMode, err = parseDefaultMode(permission); err != nil {
		return c, err
	}
	// The steps read different parameters, so each runs even when an
	// earlier one failed: the user sees every problem in one round trip.
	var errs Errors
	steps := []func(map[string]string, map[string]string, Defaults) error{c.parsePod, c.parseVault, c.parseCloud, c.parseIdentity, c.parseObjects, c.parseRefresh}
	for _, step := range steps {
		errs = errs.add(step(attrs, secrets, d))
	}
	return c, errs.err()
}

// Errors are several problems of one class, in the order its parameters
// are read. errors.As finds the first *Error in it.
type Errors []error

// maxListed bounds the message: a class of a thousand broken objects
// still gives an Event a person can read.
const maxListed = 10

func (es Errors) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "SecretProviderClass has %d problems:", len(es))
	for i, e := range es {
		if i == maxListed {
			fmt.Fprintf(&b, " (and %d more)", len(es)-maxListed)
			break
		}
		fmt.Fprintf(&b, " (%d) %s", i+1, strings.TrimPrefix(e.Error(), "SecretProviderClass "))
		if i < len(es)-1 && i < maxListed-1 {
			b.WriteByte(';')
		}
	}
	return b.String()
}

// Unwrap gives errors.As and errors.Is every problem.
func (es Errors) Unwrap() []error { return es }

// add appends err, flattening another Errors; nil is nothing.
func (es Errors) add(err error) Errors {
	var more Errors
	switch {
	case err == nil:
		return es
	case errors.As(err, &more):
		return append(es, more...)
	}
	return append(es, err)
}

// Split is Parse's error as the problems it holds: none, one, or several.
func Split(err error) []error {
	var es Errors
	switch {
	case err == nil:
		return nil
	case errors.As(err, &es):
		return es
	}
	return []error{err}
}

// err is nil, the one error, or all of them.
func (es Errors) err() error {
	switch len(es) {
	case 0:
		return nil
	case 1:
		return es[0]
	}
	return es
}

// decodeMap reads a JSON object of strings; every value is trimmed of
// surrounding space, as upstream does.
func decodeMap(what, s string) (map[string]string, error) {
	m := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return m, nil
	}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, &Error{Field: what, Msg: fmt.Sprintf("the driver sent %s that are not a JSON object of strings: %v", what, err)}
	}
	for k, v := range m {
		m[k] = strings.TrimSpace(v)
	}
	return m, nil
}

func parseDefaultMode(permission string) (os.FileMode, error) {
	if permission == "" {
		return 0o644, nil
	}
	var n json.Number
	if err := json.Unmarshal([]byte(permission), &n); err != nil {
		return 0, &Error{Field: "permission", Msg: fmt.Sprintf("the driver's file permission %q is not a number", permission)}
	}
	v, err := strconv.ParseUint(n.String(), 10, 32)
	if err != nil || v > 0o777 {
		return 0, &Error{Field: "permission", Msg: fmt.Sprintf("the driver's file permission %s is not a mode between 0 and 0777", n)}
	}
	return os.FileMode(v), nil
}

func (c *Config) parsePod(a, _ map[string]string, _ Defaults) error {
	c.Pod = Pod{Name: a["csi.storage.k8s.io/pod.name"], Namespace: a["csi.storage.k8s.io/pod.namespace"],
		UID: a["csi.storage.k8s.io/pod.uid"], ServiceAccount: a["csi.storage.k8s.io/serviceAccount.name"]}
	if c.Pod.Name == "" {
		return &Error{Field: "csi.storage.k8s.io/pod.name", Msg: "pod name is not provided: set podInfoOnMount: true on the secrets-store.csi.k8s.io CSIDriver"}
	}
	if c.Pod.Namespace == "" {
		return &Error{Field: "csi.storage.k8s.io/pod.namespace", Msg: "pod namespace is not provided: set podInfoOnMount: true on the secrets-store.csi.k8s.io CSIDriver"}
	}
	return nil
}

// parseRefresh reads the refresh the caller pushes, if any.
func (c *Config) parseRefresh(a, _ map[string]string, _ Defaults) error {
	v, ok := a[refresh.Attribute]
	if !ok {
		return nil
	}
	r, err := refresh.ParseRequest(v)
	if err != nil {
		return &Error{Field: refresh.Attribute, Msg: err.Error() + " (the driver or the sync controller sets it; a class must not)"}
	}
	c.Refresh = &r
	return nil
}

func (c *Config) parseVault(a, _ map[string]string, _ Defaults) error {
	c.VaultName = a["keyvaultName"]
	if c.VaultName == "" {
		return &Error{Field: "keyvaultName", Msg: "keyvaultName is not provided: set it to the name of your key vault"}
	}
	if err := checkVaultName(c.VaultName); err != nil {
		return &Error{Field: "keyvaultName", Msg: err.Error()}
	}
	c.TenantID = a["tenantID"]
	if c.TenantID == "" {
		c.TenantID = a["tenantId"] // the legacy spelling, still in the AKS docs
	}
	if c.TenantID == "" {
		return &Error{Field: "tenantId", Msg: "tenantId is not provided: set it to the key vault's tenant ID (az account show --query tenantId -o tsv)"}
	}
	if !tenantRE.MatchString(c.TenantID) {
		return &Error{Field: "tenantId", Msg: fmt.Sprintf("%q is not a tenant: use the tenant's ID (a GUID) or domain name (letters, digits, '-' and '.'); az account show --query tenantId -o tsv prints it", c.TenantID)}
	}
	return nil
}

func (c *Config) parseCloud(a, _ map[string]string, d Defaults) error {
	name := a["cloudName"]
	if name == "" {
		name = d.CloudName
	}
	if name == "" {
		name = "AzurePublicCloud"
	}
	file := a["cloudEnvFileName"]
	if file == "" {
		file = d.CloudEnvFile
	}
	cloud, err := CloudByName(name, file)
	c.Cloud = cloud
	return err
}
