package keyvault

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"kvmount.dev/kvmount/internal/azure/config"
)

// get reads one object version from Key Vault.
func get(ctx context.Context, c *clients, o config.Object, version string) (any, error) {
	switch o.Type {
	case config.TypeSecret:
		r, err := c.secrets.GetSecret(ctx, o.Name, version, nil)
		if err != nil {
			return nil, err
		}
		if r.Value == nil || r.ID == nil {
			return nil, errNilField
		}
		out := raw{Version: r.ID.Version(), Value: *r.Value}
		if r.KID != nil {
			out.KID = string(*r.KID)
			if r.ContentType != nil {
				out.ContentType = *r.ContentType
			}
		}
		return out, nil
	case config.TypeKey:
		r, err := c.keys.GetKey(ctx, o.Name, version, nil)
		if err != nil {
			return nil, err
		}
		if r.Key == nil || r.Key.KID == nil || r.Key.Kty == nil {
			return nil, errNilField
		}
		out := raw{Version: r.Key.KID.Version(), KTY: string(*r.Key.Kty), N: r.Key.N, E: r.Key.E, X: r.Key.X, Y: r.Key.Y}
		if r.Key.Crv != nil {
			out.Curve = string(*r.Key.Crv)
		}
		return out, nil
	}
	r, err := c.certs.GetCertificate(ctx, o.Name, version, nil)
	if err != nil {
		return nil, err
	}
	if r.ID == nil || len(r.CER) == 0 {
		return nil, errNilField
	}
	return raw{Version: r.ID.Version(), CER: r.CER}, nil
}

// versionInfo is one entry of a versions list.
type versionInfo struct {
	version string
	enabled bool
	created time.Time
}

// history returns the versions an objectVersionHistory object mounts:
// exactly the History newest enabled versions (fewer if fewer exist),
// newest first, starting at objectVersion when it is set. The list is
// cached and coalesced like object reads.
func (f *Fetcher) history(ctx context.Context, req Request, c *clients, o config.Object, since time.Time) ([]string, error) {
	key := strings.Join([]string{req.Principal.String(), req.VaultURL, o.Type, strings.ToLower(o.Name), "versions"}, "|")
	v, err := f.load(ctx, req, key, since, f.observed(o, func(ctx context.Context) (any, error) { return listVersions(ctx, c, o) }))
	if err != nil {
		return nil, err
	}
	all := v.([]versionInfo)
	// Newest first by creation time; versions created in the same second
	// (Key Vault's resolution) keep the list's order reversed, as lists
	// come oldest first.
	var enabled []versionInfo
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].enabled {
			enabled = append(enabled, all[i])
		}
	}
	slices.SortStableFunc(enabled, func(a, b versionInfo) int { return b.created.Compare(a.created) })
	start := 0
	if o.Version != "" {
		start = slices.IndexFunc(enabled, func(vi versionInfo) bool { return strings.EqualFold(vi.version, o.Version) })
		if start < 0 {
			return nil, &FormatError{Object: o, Msg: "objectVersion " + o.Version + " is not an enabled version of the object"}
		}
	}
	var out []string
	for _, vi := range enabled[start:] {
		if len(out) == o.History {
			break
		}
		out = append(out, vi.version)
	}
	return out, nil
}

func listVersions(ctx context.Context, c *clients, o config.Object) (any, error) {
	switch o.Type {
	case config.TypeSecret:
		return pages(ctx, c.secrets.NewListSecretPropertiesVersionsPager(o.Name, nil), func(p azsecrets.ListSecretPropertiesVersionsResponse) []versionInfo {
			var out []versionInfo
			for _, it := range p.Value {
				if it.ID != nil && it.Attributes != nil {
					out = append(out, newVersionInfo(it.ID.Version(), it.Attributes.Enabled, it.Attributes.Created))
				}
			}
			return out
		})
	case config.TypeKey:
		return pages(ctx, c.keys.NewListKeyPropertiesVersionsPager(o.Name, nil), func(p azkeys.ListKeyPropertiesVersionsResponse) []versionInfo {
			var out []versionInfo
			for _, it := range p.Value {
				if it.KID != nil && it.Attributes != nil {
					out = append(out, newVersionInfo(it.KID.Version(), it.Attributes.Enabled, it.Attributes.Created))
				}
			}
			return out
		})
	}
	return pages(ctx, c.certs.NewListCertificatePropertiesVersionsPager(o.Name, nil), func(p azcertificates.ListCertificatePropertiesVersionsResponse) []versionInfo {
		var out []versionInfo
		for _, it := range p.Value {
			if it.ID != nil && it.Attributes != nil {
				out = append(out, newVersionInfo(it.ID.Version(), it.Attributes.Enabled, it.Attributes.Created))
			}
		}
		return out
	})
}

// pages reads every page of a versions pager.
func pages[T any](ctx context.Context, p *runtime.Pager[T], items func(T) []versionInfo) ([]versionInfo, error) {
	var out []versionInfo
	for p.More() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, items(page)...)
	}
	return out, nil
}

func newVersionInfo(version string, enabled *bool, created *time.Time) versionInfo {
	vi := versionInfo{version: version, enabled: enabled == nil || *enabled}
	if created != nil {
		vi.created = *created
	}
	return vi
}
