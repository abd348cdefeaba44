package arm

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"

	"kvmount.dev/kvmount/internal/azsim/entra"
	"kvmount.dev/kvmount/internal/azsim/store"
)

func init() {
	register("account show", accountShow)
	register("identity create", identityCreate)
	register("identity show", identityShow)
	register("identity federated-credential create", federatedCredentialCreate)
	register("identity federated-credential delete", federatedCredentialDelete)
	register("ad sp create-for-rbac", spCreateForRBAC)
	register("ad app federated-credential create", appFederatedCredentialCreate)
}

func accountShow(_ context.Context, s *Env, _ struct{}) (any, error) {
	return map[string]any{"id": s.cloud.SubscriptionID, "tenantId": s.cloud.TenantID, "name": "azsim",
		"isDefault": true, "state": "Enabled", "environmentName": "AzureCloud"}, nil
}

// IdentityArgs names a user-assigned identity. TenantID defaults to the
// cloud's tenant; tests set it to model a foreign tenant.
type IdentityArgs struct {
	ResourceGroup string `json:"resourceGroup"`
	Name          string `json:"name"`
	Location      string `json:"location,omitempty"`
	TenantID      string `json:"tenantId,omitempty"`
}

func identityCreate(_ context.Context, s *Env, a IdentityArgs) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	rid := store.UserAssignedResourceID(s.cloud.SubscriptionID, a.ResourceGroup, a.Name)
	var p store.Principal
	err := s.update(func(tx *store.Tx) error {
		existing, err := store.FindUserAssigned(tx, rid)
		if err == nil { // az identity create is idempotent
			p = existing
			return nil
		}
		p = store.Principal{ObjectID: store.NewGUID(), ClientID: store.NewGUID(), TenantID: orDefault(a.TenantID, s.cloud.TenantID),
			Kind: store.KindUserAssigned, Name: a.Name, ResourceGroup: a.ResourceGroup, ResourceID: rid}
		return store.PutPrincipal(tx, p)
	})
	return identityJSON(p, a.Location), err
}

func identityShow(_ context.Context, s *Env, a IdentityArgs) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	p, err := s.userAssigned(a.ResourceGroup, a.Name)
	return identityJSON(p, a.Location), err
}

func (s *Env) userAssigned(rg, name string) (store.Principal, error) {
	var p store.Principal
	err := s.view(func(tx *store.Tx) error {
		var err error
		p, err = store.FindUserAssigned(tx, store.UserAssignedResourceID(s.cloud.SubscriptionID, rg, name))
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return p, notFound("The Resource 'Microsoft.ManagedIdentity/userAssignedIdentities/%s' under resource group '%s' was not found.", name, rg)
	}
	return p, err
}

func identityJSON(p store.Principal, location string) map[string]any {
	return map[string]any{"clientId": p.ClientID, "principalId": p.ObjectID, "id": p.ResourceID, "name": p.Name,
		"resourceGroup": p.ResourceGroup, "tenantId": p.TenantID, "location": orDefault(location, "westus2"),
		"type": "Microsoft.ManagedIdentity/userAssignedIdentities"}
}

// FederatedArgs adds a federated credential to an identity or an app.
type FederatedArgs struct {
	ResourceGroup string   `json:"resourceGroup,omitempty"`
	IdentityName  string   `json:"identityName,omitempty"`
	AppID         string   `json:"appId,omitempty"`
	Name          string   `json:"name"`
	Issuer        string   `json:"issuer"`
	Subject       string   `json:"subject"`
	Audiences     []string `json:"audiences,omitempty"`
}

func federatedCredentialCreate(_ context.Context, s *Env, a FederatedArgs) (any, error) {
	if err := required("--identity-name", a.IdentityName, "--resource-group/-g", a.ResourceGroup); err != nil {
		return nil, err
	}
	p, err := s.userAssigned(a.ResourceGroup, a.IdentityName)
	if err != nil {
		return nil, err
	}
	a.AppID = p.ClientID
	return s.addFederated(p, a)
}

// federatedCredentialDelete removes an identity's federated credential, as
// `az identity federated-credential delete` does: Entra ID refuses the
// service account's tokens from then on.
func federatedCredentialDelete(_ context.Context, s *Env, a FederatedArgs) (any, error) {
	if err := required("--identity-name", a.IdentityName, "--resource-group/-g", a.ResourceGroup, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	p, err := s.userAssigned(a.ResourceGroup, a.IdentityName)
	if err != nil {
		return nil, err
	}
	found := false
	err = s.update(func(tx *store.Tx) error {
		app, err := store.Get[store.App](tx, store.BucketApps, store.Path(p.ClientID))
		if err != nil {
			return err
		}
		kept := app.Federated[:0]
		for _, f := range app.Federated {
			if strings.EqualFold(f.Name, a.Name) {
				found = true
				continue
			}
			kept = append(kept, f)
		}
		app.Federated = kept
		return store.Put(tx, store.BucketApps, store.Path(app.AppID), app)
	})
	if errors.Is(err, store.ErrNotFound) || (err == nil && !found) {
		return nil, notFound("The Resource 'Microsoft.ManagedIdentity/userAssignedIdentities/%s/federatedIdentityCredentials/%s' under resource group '%s' was not found.", a.IdentityName, a.Name, a.ResourceGroup)
	}
	return nil, err
}

func appFederatedCredentialCreate(_ context.Context, s *Env, a FederatedArgs) (any, error) {
	if err := required("--id", a.AppID); err != nil {
		return nil, err
	}
	var p store.Principal
	err := s.view(func(tx *store.Tx) error {
		var err error
		p, err = store.FindPrincipal(tx, a.AppID)
		return err
	})
	if err != nil {
		return nil, notFound("Application '%s' does not exist.", a.AppID)
	}
	return s.addFederated(p, a)
}

// addFederated records a federated credential for principal p. Managed
// identities get an app record on first use, so that Entra ID finds every
// federated client the same way: by client ID.
func (s *Env) addFederated(p store.Principal, a FederatedArgs) (any, error) {
	if err := required("--name/-n", a.Name, "--issuer", a.Issuer, "--subject", a.Subject); err != nil {
		return nil, err
	}
	if len(a.Audiences) == 0 {
		a.Audiences = []string{"api://AzureADTokenExchange"}
	}
	fc := store.FederatedCredential{Name: a.Name, Issuer: a.Issuer, Subject: a.Subject, Audiences: a.Audiences}
	err := s.update(func(tx *store.Tx) error {
		app, err := store.Get[store.App](tx, store.BucketApps, store.Path(p.ClientID))
		if errors.Is(err, store.ErrNotFound) {
			app, err = store.App{AppID: p.ClientID, ObjectID: p.ObjectID, DisplayName: p.Name}, nil
		}
		if err != nil {
			return err
		}
		kept := app.Federated[:0]
		for _, f := range app.Federated {
			if !strings.EqualFold(f.Name, fc.Name) {
				kept = append(kept, f)
			}
		}
		app.Federated = append(kept, fc)
		return store.Put(tx, store.BucketApps, store.Path(app.AppID), app)
	})
	return map[string]any{"name": fc.Name, "issuer": fc.Issuer, "subject": fc.Subject, "audiences": fc.Audiences,
		"type": "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"}, err
}

// SPArgs names a new service principal.
type SPArgs struct {
	Name     string `json:"name,omitempty"`
	TenantID string `json:"tenantId,omitempty"`
}

// spCreateForRBAC registers an app with a service principal and a client
// secret, shown once, as `az ad sp create-for-rbac` does.
func spCreateForRBAC(_ context.Context, s *Env, a SPArgs) (any, error) {
	name := orDefault(a.Name, "azure-cli-"+strings.ReplaceAll(store.NewGUID()[:8], "-", ""))
	secret, err := newClientSecret()
	if err != nil {
		return nil, err
	}
	p := store.Principal{ObjectID: store.NewGUID(), ClientID: store.NewGUID(), TenantID: orDefault(a.TenantID, s.cloud.TenantID),
		Kind: store.KindApp, Name: name}
	app := store.App{AppID: p.ClientID, ObjectID: p.ObjectID, DisplayName: name, SecretHashes: []string{entra.HashSecret(secret)}}
	err = s.update(func(tx *store.Tx) error {
		if err := store.PutPrincipal(tx, p); err != nil {
			return err
		}
		return store.Put(tx, store.BucketApps, store.Path(app.AppID), app)
	})
	return map[string]any{"appId": p.ClientID, "displayName": name, "password": secret, "tenant": p.TenantID}, err
}

// newClientSecret makes a secret shaped like Entra's: 40 characters.
func newClientSecret() (string, error) {
	b := make([]byte, 30)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func orDefault(v, def string) string {
	if strings.TrimSpace(v) == "" {
		return def
	}
	return v
}
