package azsim

import (
	"fmt"
	"strings"
	"time"

	"kvmount.dev/kvmount/internal/azsim/entra"
	"kvmount.dev/kvmount/internal/azsim/eventgrid"
	"kvmount.dev/kvmount/internal/azsim/jwt"
	"kvmount.dev/kvmount/internal/azsim/keyvault"
	"kvmount.dev/kvmount/internal/azsim/store"
)

// Key Vault publishes its changes through Event Grid: each new version
// (keyvault.Config.Changed), each access policy change, and (ScanExpiry)
// objects near expiry or expired.

// vaultChanged publishes a new object version.
func (s *Server) vaultChanged(c keyvault.Change) {
	v, err := s.arm.VaultByName(c.Vault)
	if err != nil {
		return
	}
	s.eg.PublishNewVersion(eventgrid.KeyVaultChange{VaultID: s.arm.VaultID(v), VaultName: v.Name, VaultURL: VaultURL(v.Name),
		Kind: c.Kind, Name: c.Name, Version: c.Version, NBF: c.NBF, EXP: c.EXP})
}

// vaultIDExists reports whether id names a vault of the cloud.
func (s *Server) vaultIDExists(id string) bool {
	i := strings.LastIndex(id, "/")
	if i < 0 {
		return false
	}
	v, err := s.arm.VaultByName(id[i+1:])
	return err == nil && strings.EqualFold(s.arm.VaultID(v), strings.TrimRight(id, "/"))
}

// appTokens gives Event Grid its app's tokens from azsim's Entra ID.
type appTokens struct{ issuer *entra.Issuer }

func (a appTokens) IssueApp(tenant, appID, objectID, resource string, lifetime time.Duration) (string, error) {
	tok, err := a.issuer.Issue(store.Principal{ObjectID: objectID, ClientID: appID, TenantID: tenant, Kind: store.KindApp}, resource, lifetime)
	return tok.Value, err
}

func (a appTokens) Verify(token string) (jwt.Claims, error) { return a.issuer.Verify(token) }

// EventGrid is the cloud's Event Grid, for tests that read its counters.
func (s *Server) EventGrid() *eventgrid.Broker { return s.eg }

// nearExpiry is how long before its expiry an object is announced as near
// expiry (Key Vault's 30 days).
const nearExpiry = 30 * 24 * time.Hour

// expiryTypes are the event types of near expiry and expiry, by kind.
var expiryTypes = map[string][2]string{
	"secrets":      {"Microsoft.KeyVault.SecretNearExpiry", "Microsoft.KeyVault.SecretExpired"},
	"keys":         {"Microsoft.KeyVault.KeyNearExpiry", "Microsoft.KeyVault.KeyExpired"},
	"certificates": {"Microsoft.KeyVault.CertificateNearExpiry", "Microsoft.KeyVault.CertificateExpired"},
}

// ScanExpiry publishes, once per object version, the near-expiry event of
// each object's newest version that expires within 30 days of now, and
// the expired event of each that has expired. azsim scans every minute;
// tests call it with a time of their choosing.
func (s *Server) ScanExpiry(now time.Time) {
	type found struct {
		vault      store.Vault
		kind, name string
		version    string
		attrs      store.Attributes
	}
	var all []found
	_ = s.view(func(tx *store.Tx) error {
		vaults, err := store.List[store.Vault](tx, store.BucketVaults, "")
		if err != nil {
			return err
		}
		for _, v := range vaults {
			secrets, _ := store.Latest[store.Secret](tx, store.BucketSecrets, v.Name)
			for _, o := range secrets {
				if !o.Managed {
					all = append(all, found{v, "secrets", o.Name, o.Version, o.Attributes})
				}
			}
			keys, _ := store.Latest[store.Key](tx, store.BucketKeys, v.Name)
			for _, o := range keys {
				if !o.Managed {
					all = append(all, found{v, "keys", o.Name, o.Version, o.Attributes})
				}
			}
			certs, _ := store.Latest[store.Certificate](tx, store.BucketCerts, v.Name)
			for _, o := range certs {
				all = append(all, found{v, "certificates", o.Name, o.Version, o.Attributes})
			}
		}
		return nil
	})
	for _, f := range all {
		if f.attrs.EXP == nil {
			continue
		}
		for i, due := range []time.Time{f.attrs.EXP.Add(-nearExpiry), *f.attrs.EXP} {
			key := fmt.Sprintf("%d|%s|%s|%s|%s", i, f.kind, f.vault.Name, strings.ToLower(f.name), f.version)
			if now.Before(due) || !s.markExpiry(key) {
				continue
			}
			s.eg.PublishExpiry(expiryTypes[f.kind][i], eventgrid.KeyVaultChange{VaultID: s.arm.VaultID(f.vault), VaultName: f.vault.Name, VaultURL: VaultURL(f.vault.Name),
				Kind: f.kind, Name: f.name, Version: f.version, NBF: f.attrs.NBF, EXP: f.attrs.EXP})
		}
	}
}

// markExpiry records that key was announced; false if it already was.
func (s *Server) markExpiry(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.expirySent == nil {
		s.expirySent = map[string]bool{}
	}
	if s.expirySent[key] {
		return false
	}
	s.expirySent[key] = true
	return true
}

// scanExpiryEvery runs ScanExpiry every minute until done closes.
func (s *Server) scanExpiryEvery(done <-chan struct{}) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			s.ScanExpiry(now)
		}
	}
}
