package arm

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"kvmount.dev/kvmount/internal/azsim/eventgrid"
	"kvmount.dev/kvmount/internal/azsim/hosts"
	"kvmount.dev/kvmount/internal/azsim/keyvault"
	"kvmount.dev/kvmount/internal/azsim/store"
)

func init() {
	register("keyvault create", keyvaultCreate)
	register("keyvault show", keyvaultShow)
	register("keyvault set-policy", keyvaultSetPolicy)
	register("role assignment create", roleAssignmentCreate)
	register("keyvault secret set", secretSet)
	register("keyvault secret show", secretShow)
	register("keyvault secret list", secretList)
	register("keyvault secret set-attributes", secretSetAttributes)
	register("keyvault key create", keyCreate)
	register("keyvault key import", keyImport)
	register("keyvault certificate import", certificateImport)
	register("keyvault certificate create", certificateCreate)
	register("keyvault stats", keyvaultStats)
}

// VaultArgs names or creates a key vault.
type VaultArgs struct {
	Name          string `json:"name"`
	ResourceGroup string `json:"resourceGroup,omitempty"`
	Location      string `json:"location,omitempty"`
	RBAC          bool   `json:"enableRbacAuthorization,omitempty"`
	TenantID      string `json:"tenantId,omitempty"`
}

var vaultNameRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$`)

func keyvaultCreate(_ context.Context, s *Env, a VaultArgs) (any, error) {
	if err := required("--name/-n", a.Name, "--resource-group/-g", a.ResourceGroup); err != nil {
		return nil, err
	}
	if !vaultNameRE.MatchString(a.Name) || strings.Contains(a.Name, "--") {
		return nil, invalid("The vault name '%s' is invalid: use 3-24 letters, digits and hyphens, starting with a letter, ending with a letter or digit, without consecutive hyphens.", a.Name)
	}
	v := store.Vault{Name: strings.ToLower(a.Name), ResourceGroup: a.ResourceGroup, Location: orDefault(a.Location, "westus2"),
		TenantID: orDefault(a.TenantID, s.cloud.TenantID), RBAC: a.RBAC}
	err := s.update(func(tx *store.Tx) error {
		if _, err := store.Get[store.Vault](tx, store.BucketVaults, store.Path(v.Name)); err == nil {
			return &AdminError{Status: 409, Code: "VaultAlreadyExists", Message: fmt.Sprintf("The vault name '%s' is already in use.", a.Name)}
		}
		return store.Put(tx, store.BucketVaults, store.Path(v.Name), v)
	})
	if err != nil {
		return nil, err
	}
	return s.vaultJSON(v), nil
}

func keyvaultShow(_ context.Context, s *Env, a VaultArgs) (any, error) {
	v, err := s.VaultByName(a.Name)
	if err != nil {
		return nil, err
	}
	return s.vaultJSON(v), nil
}

// VaultByName is the vault of that name, or a not-found error that says
// how to create it.
func (s *Env) VaultByName(name string) (store.Vault, error) {
	var v store.Vault
	err := s.view(func(tx *store.Tx) error {
		var err error
		v, err = store.Get[store.Vault](tx, store.BucketVaults, store.Path(name))
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return v, notFound("The Vault '%s' not found within subscription; create it with `azsim keyvault create -n %s -g <resource-group>`.", name, name)
	}
	return v, err
}

func (s *Env) vaultJSON(v store.Vault) map[string]any {
	var policies []map[string]any
	for _, p := range v.Policies {
		policies = append(policies, map[string]any{"tenantId": p.TenantID, "objectId": p.ObjectID,
			"permissions": map[string]any{"secrets": p.Secrets, "keys": p.Keys, "certificates": p.Certificates}})
	}
	return map[string]any{
		"id":            fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/vaults/%s", s.cloud.SubscriptionID, v.ResourceGroup, v.Name),
		"name":          v.Name,
		"resourceGroup": v.ResourceGroup,
		"location":      v.Location,
		"type":          "Microsoft.KeyVault/vaults",
		"properties": map[string]any{"tenantId": v.TenantID, "vaultUri": hosts.VaultURL(v.Name) + "/",
			"enableRbacAuthorization": v.RBAC, "accessPolicies": policies, "sku": map[string]string{"family": "A", "name": "standard"}},
	}
}

// PolicyArgs is `keyvault set-policy`: each given permission list replaces
// the principal's list for that kind; kinds not given are kept.
type PolicyArgs struct {
	Name         string    `json:"name"`
	SPN          string    `json:"spn,omitempty"`
	ObjectID     string    `json:"objectId,omitempty"`
	Secrets      *[]string `json:"secretPermissions,omitempty"`
	Keys         *[]string `json:"keyPermissions,omitempty"`
	Certificates *[]string `json:"certificatePermissions,omitempty"`
}

var validPerms = map[string][]string{
	"secret":      {"all", "backup", "delete", "get", "list", "purge", "recover", "restore", "set"},
	"key":         {"all", "backup", "create", "decrypt", "delete", "encrypt", "get", "getrotationpolicy", "import", "list", "purge", "recover", "release", "restore", "rotate", "setrotationpolicy", "sign", "unwrapKey", "update", "verify", "wrapKey"},
	"certificate": {"all", "backup", "create", "delete", "deleteissuers", "get", "getissuers", "import", "list", "listissuers", "managecontacts", "manageissuers", "purge", "recover", "restore", "setissuers", "update"},
}

func keyvaultSetPolicy(_ context.Context, s *Env, a PolicyArgs) (any, error) {
	if err := required("--name/-n", a.Name); err != nil {
		return nil, err
	}
	if a.SPN == "" && a.ObjectID == "" {
		return nil, invalid("usage error: --object-id ID | --spn SPN | --upn UPN")
	}
	for kind, perms := range map[string]*[]string{"secret": a.Secrets, "key": a.Keys, "certificate": a.Certificates} {
		if perms == nil {
			continue
		}
		for _, p := range *perms {
			if !slices.ContainsFunc(validPerms[kind], func(v string) bool { return strings.EqualFold(v, p) }) {
				return nil, invalid("argument --%s-permissions: invalid choice: '%s' (choose from %s)", kind, p, strings.Join(validPerms[kind], ", "))
			}
		}
	}
	var v store.Vault
	err := s.update(func(tx *store.Tx) error {
		p, err := store.FindPrincipal(tx, orDefault(a.SPN, a.ObjectID))
		if err != nil {
			return notFound("Unable to find user or service principal with ID '%s' in the directory; create it first (azsim identity create, azsim ad sp create-for-rbac).", orDefault(a.SPN, a.ObjectID))
		}
		if v, err = store.Get[store.Vault](tx, store.BucketVaults, store.Path(a.Name)); err != nil {
			return notFound("The Vault '%s' not found within subscription.", a.Name)
		}
		v.Policies = mergePolicy(v.Policies, store.AccessPolicy{TenantID: p.TenantID, ObjectID: p.ObjectID}, a)
		return store.Put(tx, store.BucketVaults, store.Path(v.Name), v)
	})
	if err != nil {
		return nil, err
	}
	s.eg.PublishAccessPolicyChanged(s.VaultID(v), v.Name, hosts.VaultURL(v.Name))
	return s.vaultJSON(v), nil
}

func mergePolicy(ps []store.AccessPolicy, who store.AccessPolicy, a PolicyArgs) []store.AccessPolicy {
	i := slices.IndexFunc(ps, func(p store.AccessPolicy) bool { return strings.EqualFold(p.ObjectID, who.ObjectID) })
	if i < 0 {
		ps = append(ps, who)
		i = len(ps) - 1
	}
	if a.Secrets != nil {
		ps[i].Secrets = lower(*a.Secrets)
	}
	if a.Keys != nil {
		ps[i].Keys = lower(*a.Keys)
	}
	if a.Certificates != nil {
		ps[i].Certificates = lower(*a.Certificates)
	}
	return ps
}

func lower(xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = strings.ToLower(x)
	}
	return out
}

// eventGridRole assigns a data role on an Event Grid namespace scope;
// handled is false for other scopes.
func (s *Env) eventGridRole(a RoleArgs) (any, bool, error) {
	if !eventgrid.NamespaceScope(a.Scope) {
		return nil, false, nil
	}
	var p store.Principal
	if err := s.view(func(tx *store.Tx) error {
		var err error
		p, err = store.FindPrincipal(tx, a.Assignee)
		return err
	}); err != nil {
		return nil, true, notFound("Cannot find user or service principal in graph database for '%s'.", a.Assignee)
	}
	ra, err := s.eg.AssignRole(a.Scope, p.ObjectID, a.Role)
	if err != nil {
		_, err = FromEventGrid(nil, err)
		return nil, true, err
	}
	return map[string]any{"id": a.Scope + "/providers/Microsoft.Authorization/roleAssignments/" + ra.ID, "name": ra.ID,
		"principalId": ra.PrincipalID, "principalType": "ServicePrincipal", "roleDefinitionName": a.Role, "scope": a.Scope}, true, nil
}

// RoleArgs is `role assignment create --assignee … --role … --scope …`.
type RoleArgs struct {
	Assignee string `json:"assignee"`
	Role     string `json:"role"`
	Scope    string `json:"scope"`
}

var roleIDs = map[string]string{
	"00482a5a-887f-4fb3-b363-3b7fe8e74483": "key vault administrator",
	"4633458b-17de-408a-b874-0445c86b69e6": "key vault secrets user",
	"b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "key vault secrets officer",
	"db79e9a7-68ee-4b58-9aeb-b90e7c24fcba": "key vault certificate user",
	"a4417e6f-fecd-4de8-b567-7b0420556985": "key vault certificates officer",
	"21090545-7ca7-4776-b22c-e363652d74d2": "key vault reader",
	"12338af0-0e69-4776-bea7-57ae8d297424": "key vault crypto user",
	"14b46e9e-c2b7-41b4-b07b-48a6ebf60603": "key vault crypto officer",
}

var vaultScopeRE = regexp.MustCompile(`(?i)^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.keyvault/vaults/([^/]+)(/(secrets|keys|certificates)/[^/]+)?$`)

func roleAssignmentCreate(_ context.Context, s *Env, a RoleArgs) (any, error) {
	if err := required("--assignee", a.Assignee, "--role", a.Role, "--scope", a.Scope); err != nil {
		return nil, err
	}
	if out, handled, err := s.eventGridRole(a); handled {
		return out, err
	}
	role := strings.ToLower(a.Role)
	if name, ok := roleIDs[role]; ok {
		role = name
	}
	if !slices.Contains(keyvault.RoleNames(), role) {
		return nil, notFound("Role '%s' doesn't exist; azsim knows: %s.", a.Role, strings.Join(keyvault.RoleNames(), ", "))
	}
	m := vaultScopeRE.FindStringSubmatch(a.Scope)
	if m == nil {
		return nil, invalid("--scope %q must be a key vault or an object in it: /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.KeyVault/vaults/<name>[/secrets/<name>]", a.Scope)
	}
	var ra store.RoleAssign
	err := s.update(func(tx *store.Tx) error {
		p, err := store.FindPrincipal(tx, a.Assignee)
		if err != nil {
			return notFound("Cannot find user or service principal in graph database for '%s'.", a.Assignee)
		}
		v, err := store.Get[store.Vault](tx, store.BucketVaults, store.Path(m[1]))
		if err != nil {
			return notFound("The Vault '%s' not found within subscription.", m[1])
		}
		ra = store.RoleAssign{ID: store.NewGUID(), PrincipalID: p.ObjectID, Role: role, Scope: a.Scope}
		v.Roles = append(v.Roles, ra)
		return store.Put(tx, store.BucketVaults, store.Path(v.Name), v)
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"id": a.Scope + "/providers/Microsoft.Authorization/roleAssignments/" + ra.ID, "name": ra.ID,
		"principalId": ra.PrincipalID, "principalType": "ServicePrincipal", "roleDefinitionName": a.Role, "scope": a.Scope}, nil
}

// SecretArgs is `keyvault secret set`.
type SecretArgs struct {
	VaultName   string `json:"vaultName"`
	Name        string `json:"name"`
	Value       string `json:"value"`
	ContentType string `json:"contentType,omitempty"`
	Disabled    bool   `json:"disabled,omitempty"`
	Expires     string `json:"expires,omitempty"`
	NotBefore   string `json:"notBefore,omitempty"`
	Version     string `json:"version,omitempty"`
}

func secretSet(_ context.Context, s *Env, a SecretArgs) (any, error) {
	if err := required("--vault-name", a.VaultName, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	if _, err := s.VaultByName(a.VaultName); err != nil {
		return nil, err
	}
	attrs, err := attributesArg(!a.Disabled, a.NotBefore, a.Expires)
	if err != nil {
		return nil, err
	}
	sec, err := s.kv.SetSecret(a.VaultName, a.Name, keyvault.SecretParams{Value: &a.Value, ContentType: a.ContentType, Attributes: attrs})
	if err != nil {
		return nil, err
	}
	return secretJSON(sec, true), nil
}

// SecretAttrArgs changes a secret version's attributes (az keyvault
// secret set-attributes).
type SecretAttrArgs struct {
	VaultName string `json:"vaultName"`
	Name      string `json:"name"`
	Version   string `json:"version,omitempty"`
	Enabled   *bool  `json:"enabled,omitempty"`
}

func secretSetAttributes(_ context.Context, s *Env, a SecretAttrArgs) (any, error) {
	if err := required("--vault-name", a.VaultName, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	if _, err := s.VaultByName(a.VaultName); err != nil {
		return nil, err
	}
	if a.Enabled == nil {
		return nil, invalid("usage error: give at least one attribute to change, e.g. --enabled false")
	}
	sec, err := s.kv.SetSecretEnabled(a.VaultName, a.Name, a.Version, *a.Enabled)
	if err != nil {
		return nil, err
	}
	return secretJSON(sec, false), nil
}

func secretShow(_ context.Context, s *Env, a SecretArgs) (any, error) {
	if err := required("--vault-name", a.VaultName, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	var vs []store.Secret
	if err := s.view(func(tx *store.Tx) error {
		var err error
		vs, err = store.Versions[store.Secret](tx, store.BucketSecrets, a.VaultName, a.Name)
		return err
	}); err != nil {
		return nil, err
	}
	for i := len(vs) - 1; i >= 0; i-- {
		if a.Version == "" || strings.EqualFold(vs[i].Version, a.Version) {
			return secretJSON(vs[i], true), nil
		}
	}
	return nil, notFound("A secret with (name/id) %s was not found in this key vault.", a.Name)
}

// secretList lists a vault's secrets as `az keyvault secret list` does:
// each name once, its id without a version, and never a value.
func secretList(_ context.Context, s *Env, a SecretArgs) (any, error) {
	if err := required("--vault-name", a.VaultName); err != nil {
		return nil, err
	}
	var latest []store.Secret
	if err := s.view(func(tx *store.Tx) error {
		var err error
		latest, err = store.Latest[store.Secret](tx, store.BucketSecrets, a.VaultName)
		return err
	}); err != nil {
		return nil, err
	}
	items := make([]any, 0, len(latest))
	for _, sec := range latest {
		item := secretJSON(sec, false)
		item["id"] = hosts.VaultURL(sec.Vault) + "/secrets/" + sec.Name
		items = append(items, item)
	}
	return map[string]any{"value": items}, nil
}

// secretJSON is the CLI's view of a secret; the value only for its owner's
// own `secret set`/`show`, never in logs.
func secretJSON(sec store.Secret, withValue bool) map[string]any {
	out := map[string]any{"id": hosts.VaultURL(sec.Vault) + "/secrets/" + sec.Name + "/" + sec.Version, "name": sec.Name,
		"contentType": sec.ContentType, "attributes": map[string]any{"enabled": sec.Attributes.Enabled,
			"created": sec.Attributes.Created.Format(time.RFC3339), "updated": sec.Attributes.Updated.Format(time.RFC3339)},
		"managed": sec.Managed}
	if withValue {
		out["value"] = sec.Value
	}
	return out
}

// attributesArg builds object attributes from CLI values (RFC 3339 times).
func attributesArg(enabled bool, nbf, exp string) (*keyvault.Attributes, error) {
	a := &keyvault.Attributes{Enabled: &enabled}
	for _, f := range []struct {
		name, v string
		dst     **int64
	}{{"--not-before", nbf, &a.NBF}, {"--expires", exp, &a.EXP}} {
		if f.v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, f.v)
		if err != nil {
			return nil, invalid("%s %q: use an RFC 3339 time such as 2030-01-02T15:04:05Z", f.name, f.v)
		}
		u := t.Unix()
		*f.dst = &u
	}
	return a, nil
}

// KeyArgs is `keyvault key create|import`.
type KeyArgs struct {
	VaultName string   `json:"vaultName"`
	Name      string   `json:"name"`
	KTY       string   `json:"kty,omitempty"`
	Size      int      `json:"size,omitempty"`
	Curve     string   `json:"curve,omitempty"`
	Ops       []string `json:"ops,omitempty"`
	// PEM is an imported private key (PKCS#8, PKCS#1 or SEC 1).
	PEM string `json:"pem,omitempty"`
}

func keyCreate(_ context.Context, s *Env, a KeyArgs) (any, error) {
	if err := required("--vault-name", a.VaultName, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	if _, err := s.VaultByName(a.VaultName); err != nil {
		return nil, err
	}
	k, err := s.kv.CreateKey(a.VaultName, a.Name, keyvault.CreateKeyParams{KTY: orDefault(a.KTY, "RSA"), KeySize: a.Size, Curve: a.Curve, KeyOps: a.Ops})
	if err != nil {
		return nil, err
	}
	return keyJSON(k), nil
}

func keyImport(_ context.Context, s *Env, a KeyArgs) (any, error) {
	if err := required("--vault-name", a.VaultName, "--name/-n", a.Name, "--pem-file", a.PEM); err != nil {
		return nil, err
	}
	if _, err := s.VaultByName(a.VaultName); err != nil {
		return nil, err
	}
	k, err := s.kv.ImportKeyPEM(a.VaultName, a.Name, []byte(a.PEM), a.Ops)
	if err != nil {
		return nil, err
	}
	return keyJSON(k), nil
}

func keyJSON(k store.Key) map[string]any {
	return map[string]any{"key": map[string]any{"kid": hosts.VaultURL(k.Vault) + "/keys/" + k.Name + "/" + k.Version, "kty": k.KTY, "keyOps": k.Ops},
		"name": k.Name, "attributes": map[string]any{"enabled": k.Attributes.Enabled}, "managed": k.Managed}
}

// CertArgs is `keyvault certificate import|create`.
type CertArgs struct {
	VaultName string `json:"vaultName"`
	Name      string `json:"name"`
	// File is the imported file: PEM text, or a PFX in base64.
	File     string `json:"file,omitempty"`
	Password string `json:"password,omitempty"`
	// Policy is the certificate policy JSON (create, and import's
	// secret_props.contentType).
	Policy *keyvault.CertPolicy `json:"policy,omitempty"`
}

func certificateImport(_ context.Context, s *Env, a CertArgs) (any, error) {
	if err := required("--vault-name", a.VaultName, "--name/-n", a.Name, "--file/-f", a.File); err != nil {
		return nil, err
	}
	if _, err := s.VaultByName(a.VaultName); err != nil {
		return nil, err
	}
	c, err := s.kv.ImportCertificate(a.VaultName, a.Name, keyvault.ImportCertParams{Value: a.File, Password: a.Password, Policy: a.Policy})
	if err != nil {
		return nil, err
	}
	return certJSON(c), nil
}

func certificateCreate(_ context.Context, s *Env, a CertArgs) (any, error) {
	if err := required("--vault-name", a.VaultName, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	if a.Policy == nil {
		return nil, invalid("the following arguments are required: --policy/-p (try `azsim keyvault certificate get-default-policy`)")
	}
	if _, err := s.VaultByName(a.VaultName); err != nil {
		return nil, err
	}
	c, err := s.kv.CreateCertificate(a.VaultName, a.Name, keyvault.CreateCertParams{Policy: a.Policy})
	if err != nil {
		return nil, err
	}
	return certJSON(c), nil
}

func certJSON(c store.Certificate) map[string]any {
	base := hosts.VaultURL(c.Vault)
	return map[string]any{"id": base + "/certificates/" + c.Name + "/" + c.Version, "name": c.Name,
		"kid": base + "/keys/" + c.Name + "/" + c.Version, "sid": base + "/secrets/" + c.Name + "/" + c.Version,
		"cer": base64.StdEncoding.EncodeToString(c.Leaf), "policy": map[string]any{"secretProperties": map[string]any{"contentType": c.ContentType},
			"issuerParameters": map[string]any{"name": c.Issuer}, "x509CertificateProperties": map[string]any{"subject": c.Subject}}}
}

// StatsArgs names a vault whose request counters to read (and reset).
type StatsArgs struct {
	Name  string `json:"name"`
	Reset bool   `json:"reset,omitempty"`
}

func keyvaultStats(_ context.Context, s *Env, a StatsArgs) (any, error) {
	st := s.kv.Stats(strings.ToLower(a.Name))
	if a.Reset {
		s.kv.ResetStats()
	}
	return st, nil
}
