package keyvault

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"kvmount.dev/kvmount/internal/azsim/jwt"
	"kvmount.dev/kvmount/internal/azsim/store"
)

// Object kinds, as they appear in paths and in access-policy permissions.
const (
	kindSecrets = "secrets"
	kindKeys    = "keys"
	kindCerts   = "certificates"
)

// Verifier checks a bearer token's signature and lifetime; Key Vault then
// checks audience and issuer itself, to answer with its own error codes.
type Verifier interface {
	Verify(token string) (jwt.Claims, error)
}

// caller is the authenticated principal of a request.
type caller struct {
	claims jwt.Claims
}

func (c caller) String() string {
	return fmt.Sprintf("appid=%s;oid=%s;iss=%s", c.claims.AppID, c.claims.ObjectID, c.claims.Issuer)
}

// challenge is the 401 every request without a token gets first. Its
// authorization URL carries the vault's tenant (the SDK takes the fourth
// slash-separated segment) and its resource is a suffix of every vault host,
// so the SDK's challenge-resource check passes unchanged.
func (h *Handler) challenge(tenant, msg string) *apiError {
	return &apiError{status: http.StatusUnauthorized, code: "Unauthorized", msg: msg,
		header: map[string]string{"WWW-Authenticate": fmt.Sprintf(`Bearer authorization="%s/%s", resource="%s"`,
			h.cfg.LoginURL, tenant, h.cfg.Resource)}}
}

// authenticate verifies the request's bearer token for a vault of tenant.
func (h *Handler) authenticate(r *http.Request, tenant string) (caller, error) {
	auth := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || token == "" {
		return caller{}, h.challenge(tenant, "AKV10000: Request is missing a Bearer or PoP token.")
	}
	claims, err := h.cfg.Verifier.Verify(token)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return caller{}, h.challenge(tenant, "AKV10040: Token is expired.")
	case err != nil:
		return caller{}, h.challenge(tenant, "AKV10020: Invalid token: the signature or format is not valid.")
	}
	if !claims.Audiences.Has(h.cfg.Resource) && !claims.Audiences.Has(h.cfg.Resource+"/") {
		return caller{}, &apiError{status: http.StatusUnauthorized, code: "Unauthorized",
			msg: fmt.Sprintf("AKV10022: Invalid audience. Expected %s, found: %s.", h.cfg.Resource, strings.Join(claims.Audiences, ","))}
	}
	if want := issuerFor(tenant); claims.Issuer != want {
		return caller{}, &apiError{status: http.StatusUnauthorized, code: "Unauthorized",
			msg: fmt.Sprintf("AKV10032: Invalid issuer. Expected one of %s, found %s.", want, claims.Issuer)}
	}
	return caller{claims: claims}, nil
}

// issuerFor is the v1 issuer of a tenant's access tokens.
func issuerFor(tenant string) string { return "https://sts.windows.net/" + tenant + "/" }

// authorize checks that the caller may do perm ("get", "list", "set", …) on
// an object of kind in vault, under the vault's model: access policies or
// Azure RBAC.
func (h *Handler) authorize(v store.Vault, c caller, kind, perm, name string) error {
	if v.RBAC {
		return h.authorizeRBAC(v, c, kind, perm, name)
	}
	for _, p := range v.Policies {
		if !strings.EqualFold(p.ObjectID, c.claims.ObjectID) || !strings.EqualFold(p.TenantID, v.TenantID) {
			continue
		}
		if hasPermission(policyPerms(p, kind), perm) {
			return nil
		}
	}
	return &apiError{status: http.StatusForbidden, code: "Forbidden", inner: "ForbiddenByPolicy", msg: fmt.Sprintf(
		"The user, group or application '%s' does not have %s %s permission on key vault '%s;location=%s'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
		c, kind, perm, v.Name, v.Location)}
}

func policyPerms(p store.AccessPolicy, kind string) []string {
	switch kind {
	case kindSecrets:
		return p.Secrets
	case kindKeys:
		return p.Keys
	}
	return p.Certificates
}

func hasPermission(granted []string, perm string) bool {
	return slices.ContainsFunc(granted, func(g string) bool { return strings.EqualFold(g, perm) || strings.EqualFold(g, "all") })
}

func (h *Handler) authorizeRBAC(v store.Vault, c caller, kind, perm, name string) error {
	vaultID := h.vaultResourceID(v)
	resource := vaultID + "/" + kind + "/" + name
	action := dataAction(kind, perm)
	for _, ra := range v.Roles {
		if !strings.EqualFold(ra.PrincipalID, c.claims.ObjectID) {
			continue
		}
		if !scopeCovers(ra.Scope, resource) {
			continue
		}
		if slices.Contains(roleGrants[strings.ToLower(ra.Role)], kind+":"+perm) {
			return nil
		}
	}
	return &apiError{status: http.StatusForbidden, code: "Forbidden", inner: "ForbiddenByRbac", msg: fmt.Sprintf(
		"Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: %s\r\nAction: '%s'\r\nResource: '%s'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\nVault: %s;location=%s\r\n",
		c, action, strings.ToLower(resource), v.Name, v.Location)}
}

// scopeCovers reports whether an RBAC scope covers resource: the same
// resource or one below it, path segment by path segment (a role on vault
// kv1 does not grant kv10, a role on secret s does not grant s2).
func scopeCovers(scope, resource string) bool {
	scope = strings.TrimSuffix(strings.ToLower(scope), "/")
	resource = strings.ToLower(resource)
	return resource == scope || strings.HasPrefix(resource, scope+"/")
}

func (h *Handler) vaultResourceID(v store.Vault) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/vaults/%s", h.cfg.SubscriptionID, v.ResourceGroup, v.Name)
}

// dataAction names the RBAC data action of an operation, as denial messages
// show it.
func dataAction(kind, perm string) string {
	base := "Microsoft.KeyVault/vaults/" + kind + "/"
	switch kind + ":" + perm {
	case "secrets:get":
		return base + "getSecret/action"
	case "secrets:list":
		return base + "readMetadata/action"
	case "secrets:set":
		return base + "setSecret/action"
	case "keys:get", "keys:list", "certificates:get", "certificates:list":
		return base + "read"
	}
	return base + perm + "/action"
}

// roleGrants maps the built-in Key Vault data roles to the operations they
// allow, as kind:permission.
var roleGrants = map[string][]string{
	"key vault administrator":        {"secrets:get", "secrets:list", "secrets:set", "secrets:update", "keys:get", "keys:list", "keys:create", "keys:import", "keys:update", "certificates:get", "certificates:list", "certificates:create", "certificates:import", "certificates:update"},
	"key vault secrets user":         {"secrets:get", "secrets:list"},
	"key vault secrets officer":      {"secrets:get", "secrets:list", "secrets:set", "secrets:update"},
	"key vault certificate user":     {"certificates:get", "certificates:list", "secrets:get", "secrets:list", "keys:get", "keys:list"},
	"key vault certificates officer": {"certificates:get", "certificates:list", "certificates:create", "certificates:import", "certificates:update"},
	"key vault crypto user":          {"keys:get", "keys:list"},
	"key vault crypto officer":       {"keys:get", "keys:list", "keys:create", "keys:import", "keys:update"},
	"key vault reader":               {"secrets:list", "keys:get", "keys:list", "certificates:get", "certificates:list"},
}

// RoleNames lists the built-in roles azsim knows, for the CLI's validation.
func RoleNames() []string {
	names := make([]string, 0, len(roleGrants))
	for n := range roleGrants {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
