package store

import (
	"crypto/rand"
	"fmt"
	"strings"
	"time"
)

// Buckets, one per kind of document.
const (
	BucketConfig     = "config"
	BucketPrincipals = "principals"
	BucketApps       = "apps"
	BucketMachines   = "machines"
	BucketClusters   = "clusters"
	BucketVaults     = "vaults"
	BucketSecrets    = "secrets"
	BucketKeys       = "keys"
	BucketCerts      = "certificates"
	BucketVersionSeq = "version-seq"
	BucketPorts      = "ports"
	// BucketIdentityBindings holds AKS identity bindings, keyed
	// <resource group>/<cluster>/<name>.
	BucketIdentityBindings = "identity-bindings"
)

// Principal kinds.
const (
	KindUserAssigned   = "userAssigned"
	KindSystemAssigned = "systemAssigned"
	KindApp            = "servicePrincipal"
)

// Cloud holds the simulated account: one tenant and one subscription, made
// on first start and kept.
type Cloud struct {
	TenantID       string `json:"tenantId"`
	SubscriptionID string `json:"subscriptionId"`
	// SigningKey is the PKCS#8 DER of the RSA key every azsim token is
	// signed with.
	SigningKey []byte `json:"signingKey"`
}

// Principal is anything that can hold a token: a managed identity (user- or
// system-assigned) or an app's service principal. Access policies and role
// assignments name its ObjectID; tokens carry ObjectID as oid and ClientID as
// appid.
type Principal struct {
	ObjectID string `json:"objectId"`
	ClientID string `json:"clientId"`
	TenantID string `json:"tenantId"`
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	// ResourceGroup and ResourceID are set for user-assigned identities.
	ResourceGroup string `json:"resourceGroup,omitempty"`
	ResourceID    string `json:"resourceId,omitempty"`
	// Owner is the resource ID of the VM or scale set a system-assigned
	// identity belongs to.
	Owner string `json:"owner,omitempty"`
}

// App is an app registration with its service principal's credentials.
type App struct {
	AppID       string `json:"appId"`
	ObjectID    string `json:"objectId"` // the service principal's object ID
	DisplayName string `json:"displayName"`
	// SecretHashes are SHA-256 hex digests of the client secrets; the
	// secrets themselves are shown once, at creation, like Entra ID does.
	SecretHashes []string              `json:"secretHashes,omitempty"`
	Federated    []FederatedCredential `json:"federatedCredentials,omitempty"`
}

// FederatedCredential trusts tokens from an external issuer (a cluster's
// service-account issuer) for one subject.
type FederatedCredential struct {
	Name      string   `json:"name"`
	Issuer    string   `json:"issuer"`
	Subject   string   `json:"subject"`
	Audiences []string `json:"audiences"`
}

// Machine is a VM or a VM scale set; scale set instances share its
// identities. Each instance that runs a node gets its own IMDS endpoint.
type Machine struct {
	Name          string `json:"name"`
	ResourceGroup string `json:"resourceGroup"`
	ScaleSet      bool   `json:"scaleSet"`
	// SystemAssigned is the object ID of the system-assigned identity, if
	// enabled.
	SystemAssigned string `json:"systemAssigned,omitempty"`
	// UserAssigned holds the resource IDs of assigned user-assigned
	// identities, lower-cased.
	UserAssigned []string `json:"userAssigned,omitempty"`
	// Instances is a scale set's instance count; each gets an IMDS.
	Instances int `json:"instances,omitempty"`
}

// Cluster is an AKS cluster record: a node pool scale set and the Key Vault
// secrets provider add-on's identity.
type Cluster struct {
	Name              string `json:"name"`
	ResourceGroup     string `json:"resourceGroup"`
	NodeResourceGroup string `json:"nodeResourceGroup"`
	ScaleSet          string `json:"scaleSet"`
	// AddonIdentity is the resource ID of the
	// azurekeyvaultsecretsprovider-<cluster> identity.
	AddonIdentity string `json:"addonIdentity"`
	// OIDCIssuer is the cluster's service-account issuer URL, if known.
	OIDCIssuer string `json:"oidcIssuer,omitempty"`
}

// IdentityBinding maps a user-assigned managed identity to an AKS cluster
// (az aks identity-binding create).
type IdentityBinding struct {
	Name               string `json:"name"`
	ResourceGroup      string `json:"resourceGroup"`
	Cluster            string `json:"cluster"`
	IdentityResourceID string `json:"identityResourceId"`
	ClientID           string `json:"clientId"`
}

// Vault is a key vault: its tenant, authorization model and grants.
type Vault struct {
	Name          string         `json:"name"`
	ResourceGroup string         `json:"resourceGroup"`
	Location      string         `json:"location"`
	TenantID      string         `json:"tenantId"`
	RBAC          bool           `json:"enableRbacAuthorization"`
	Policies      []AccessPolicy `json:"accessPolicies,omitempty"`
	Roles         []RoleAssign   `json:"roleAssignments,omitempty"`
}

// AccessPolicy grants one principal permissions per object kind.
type AccessPolicy struct {
	TenantID     string   `json:"tenantId"`
	ObjectID     string   `json:"objectId"`
	Secrets      []string `json:"secrets,omitempty"`
	Keys         []string `json:"keys,omitempty"`
	Certificates []string `json:"certificates,omitempty"`
}

// RoleAssign is an Azure RBAC role assignment at the vault's scope or below.
type RoleAssign struct {
	ID          string `json:"id"`
	PrincipalID string `json:"principalId"`
	Role        string `json:"roleDefinitionName"`
	Scope       string `json:"scope"`
}

// Attributes are an object version's lifecycle attributes.
type Attributes struct {
	Enabled bool       `json:"enabled"`
	NBF     *time.Time `json:"nbf,omitempty"`
	EXP     *time.Time `json:"exp,omitempty"`
	Created time.Time  `json:"created"`
	Updated time.Time  `json:"updated"`
}

// Secret is one version of a secret.
type Secret struct {
	Vault       string            `json:"vault"`
	Name        string            `json:"name"`
	Version     string            `json:"version"`
	Seq         uint64            `json:"seq"`
	Value       string            `json:"value"`
	ContentType string            `json:"contentType,omitempty"`
	Attributes  Attributes        `json:"attributes"`
	Tags        map[string]string `json:"tags,omitempty"`
	// Managed secrets back a certificate: KID names its key version.
	Managed bool   `json:"managed,omitempty"`
	KID     string `json:"kid,omitempty"`
}

// Key is one version of a key, private parts included.
type Key struct {
	Vault      string            `json:"vault"`
	Name       string            `json:"name"`
	Version    string            `json:"version"`
	Seq        uint64            `json:"seq"`
	KTY        string            `json:"kty"`
	Ops        []string          `json:"key_ops"`
	PKCS8      []byte            `json:"pkcs8,omitempty"` // RSA and EC
	Octets     []byte            `json:"octets,omitempty"`
	Attributes Attributes        `json:"attributes"`
	Tags       map[string]string `json:"tags,omitempty"`
	Managed    bool              `json:"managed,omitempty"`
}

// Certificate is one version of a certificate: the leaf, its chain and the
// policy its backing secret follows.
type Certificate struct {
	Vault       string            `json:"vault"`
	Name        string            `json:"name"`
	Version     string            `json:"version"`
	Seq         uint64            `json:"seq"`
	Leaf        []byte            `json:"leaf"`            // DER
	Chain       [][]byte          `json:"chain,omitempty"` // DER, issuer order as imported
	ContentType string            `json:"contentType"`     // of the backing secret
	Issuer      string            `json:"issuer"`          // "Self" or "Unknown"
	Subject     string            `json:"subject"`
	Validity    int               `json:"validityMonths,omitempty"`
	KeyType     string            `json:"keyType"`
	KeySize     int               `json:"keySize,omitempty"`
	Exportable  bool              `json:"exportable"`
	Attributes  Attributes        `json:"attributes"`
	Tags        map[string]string `json:"tags,omitempty"`
	// PreserveCertOrder: the backing secret keeps the imported order.
	PreserveCertOrder bool `json:"preserveCertOrder,omitempty"`
}

// NewGUID returns a random RFC 4122 version 4 GUID, the shape of every
// Azure object ID, client ID and tenant ID.
func NewGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// NewVersion returns a Key Vault object version: 32 lower-case hex digits.
func NewVersion() string {
	return strings.ReplaceAll(NewGUID(), "-", "")
}
