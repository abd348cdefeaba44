package config

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

func parseBool(a map[string]string, name string) (bool, error) {
	v := a[name]
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, &Error{Field: name, Msg: fmt.Sprintf("%q is not a boolean: use \"true\" or \"false\"", v)}
	}
	return b, nil
}

// parseIdentity picks the identity mode as upstream does: pod identity or VM
// managed identity when asked for, else workload identity when clientID is
// set, else the service principal of nodePublishSecretRef.
func (c *Config) parseIdentity(a, secrets map[string]string, _ Defaults) error {
	pod, err := parseBool(a, "usePodIdentity")
	if err != nil {
		return err
	}
	vm, err := parseBool(a, "useVMManagedIdentity")
	if err != nil {
		return err
	}
	proxy, err := parseBool(a, "useAzureTokenProxy")
	if err != nil {
		return err
	}
	if n := btoi(pod) + btoi(vm) + btoi(proxy); n > 1 {
		return &Error{Field: "usePodIdentity/useVMManagedIdentity/useAzureTokenProxy", Msg: "only one identity mode can be enabled at a time: set exactly one of usePodIdentity, useVMManagedIdentity or useAzureTokenProxy to \"true\""}
	}
	c.UserAssignedIdentityID, c.ClientID = a["userAssignedIdentityID"], a["clientID"]
	switch {
	case proxy:
		return c.parseIdentityBinding(a)
	case pod:
		c.Mode = ModePodIdentity
	case vm:
		return c.parseVMIdentity()
	case c.ClientID != "":
		return c.parseWorkloadIdentity(a)
	default:
		return c.parseServicePrincipal(secrets)
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (c *Config) parseVMIdentity() error {
	c.Mode = ModeVMManagedIdentity
	if c.ClientID != "" {
		// Upstream ignores clientID here too; a common mistake (#1356).
		c.warn(Warning{Msg: fmt.Sprintf("clientID is the workload-identity parameter and is ignored with useVMManagedIdentity (as upstream ignores it): if %s is the VM's user-assigned identity to use, set userAssignedIdentityID: %q and remove clientID", c.ClientID, c.ClientID)})
	}
	id := c.UserAssignedIdentityID
	if id != "" && !isGUID(id) && !strings.HasPrefix(strings.ToLower(id), "/subscriptions/") {
		return &Error{Field: "userAssignedIdentityID", Msg: fmt.Sprintf("%q is neither a client ID (a GUID) nor an identity resource ID (/subscriptions/…/userAssignedIdentities/<name>)", id)}
	}
	return nil
}

func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
				return false
			}
		}
	}
	return true
}

// saTokens is the driver's serviceAccount.tokens attribute.
type saTokens map[string]struct {
	Token string `json:"token"`
}

func (c *Config) parseWorkloadIdentity(a map[string]string) error {
	c.Mode = ModeWorkloadIdentity
	missing := &Error{Field: "clientID", Msg: fmt.Sprintf("workload identity (clientID set) needs the pod's service-account token for audience %s, and the driver sent none: add tokenRequests: [{audience: %s}] to the secrets-store.csi.k8s.io CSIDriver", WorkloadIdentityAudience, WorkloadIdentityAudience)}
	tok, err := serviceAccountToken(a, WorkloadIdentityAudience, missing)
	c.ServiceAccountToken = tok
	return err
}

// parseIdentityBinding is useAzureTokenProxy: a user-assigned identity's
// clientID and the pod's token for IdentityBindingAudience.
func (c *Config) parseIdentityBinding(a map[string]string) error {
	c.Mode = ModeIdentityBinding
	if c.ClientID == "" {
		return &Error{Field: "clientID", Msg: "identity binding (useAzureTokenProxy) needs clientID: the client ID of the user-assigned managed identity the cluster's identity binding maps (az aks identity-binding show --query properties.managedIdentity.clientId)"}
	}
	if !isGUID(c.ClientID) {
		return &Error{Field: "clientID", Msg: fmt.Sprintf("%q is not a client ID (a GUID) of a user-assigned managed identity", c.ClientID)}
	}
	if c.UserAssignedIdentityID != "" {
		c.warn(Warning{Msg: "userAssignedIdentityID is the VM managed identity's parameter and is ignored with useAzureTokenProxy (identity binding uses clientID)"})
	}
	missing := &Error{Field: "useAzureTokenProxy", Msg: fmt.Sprintf("identity binding needs the pod's service-account token for audience %s, and the driver sent none: add tokenRequests: [{audience: %s}] to the secrets-store.csi.k8s.io CSIDriver (kvmount's chart lists it)", IdentityBindingAudience, IdentityBindingAudience)}
	tok, err := serviceAccountToken(a, IdentityBindingAudience, missing)
	c.ServiceAccountToken = tok
	return err
}

// serviceAccountToken is the pod's token for audience from the driver's
// serviceAccount.tokens attribute; missing is the error when there is none.
func serviceAccountToken(a map[string]string, audience string, missing error) (string, error) {
	raw := a["csi.storage.k8s.io/serviceAccount.tokens"]
	if raw == "" {
		return "", missing
	}
	var toks saTokens
	if err := json.Unmarshal([]byte(raw), &toks); err != nil {
		return "", &Error{Field: "csi.storage.k8s.io/serviceAccount.tokens", Msg: "the driver sent service-account tokens that are not valid JSON"}
	}
	t, ok := toks[audience]
	if !ok || t.Token == "" {
		return "", missing
	}
	if !jwtWithSubject(t.Token) {
		return "", &Error{Field: "csi.storage.k8s.io/serviceAccount.tokens", Msg: fmt.Sprintf("the service-account token for %s is not a JWT with a subject: it must come from kubelet's tokenRequests on the secrets-store.csi.k8s.io CSIDriver, not from volumeAttributes", audience)}
	}
	return t.Token, nil
}

func (c *Config) parseServicePrincipal(secrets map[string]string) error {
	c.Mode = ModeServicePrincipal
	for k, v := range secrets {
		switch strings.ToLower(k) {
		case "clientid":
			c.SPClientID = v
		case "clientsecret":
			c.SPClientSecret = v
		}
	}
	fix := "no identity mode is set (usePodIdentity, useVMManagedIdentity, clientID), so a service principal is used: give the volume a nodePublishSecretRef to a Secret with keys clientid and clientsecret"
	switch {
	case len(secrets) == 0:
		return &Error{Field: "nodePublishSecretRef", Msg: fix}
	case c.SPClientID == "":
		return &Error{Field: "nodePublishSecretRef", Msg: "the nodePublishSecretRef Secret has no clientid key: " + fix}
	case c.SPClientSecret == "":
		return &Error{Field: "nodePublishSecretRef", Msg: "the nodePublishSecretRef Secret has no clientsecret key: " + fix}
	}
	return nil
}

// jwtWithSubject reports whether tok is a JWT whose payload names a
// subject. It verifies nothing: Entra ID does that.
func jwtWithSubject(tok string) bool {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return false
	}
	var claims struct {
		Subject string `json:"sub"`
	}
	return json.Unmarshal(b, &claims) == nil && claims.Subject != ""
}
