package kvevents

import (
	"errors"
	"strings"
	"testing"
)

// docSample is the Event Grid schema sample of Key Vault's event page,
// keys as written there ("ObjectName " with a trailing space, " Version").
const docSample = `[{
  "id":"00eccf70-95a7-4e7c-8299-2eb17ee9ad64",
  "topic":"/subscriptions/xxx/resourceGroups/xxx/providers/Microsoft.KeyVault/vaults/sample-kv",
  "subject":"newsecret",
  "eventType":"Microsoft.KeyVault.SecretNewVersionCreated",
  "eventTime":"2019-07-25T01:08:33.1036736Z",
  "data":{"Id":"https://sample-kv.vault.azure.net/secrets/newsecret/ee059b2bb5bc48398a53b168c6cdcb10","VaultName":"sample-kv","ObjectType":"Secret","ObjectName ":"newsecret"," Version":" ee059b2bb5bc48398a53b168c6cdcb10","NBF":"1559081980","EXP":"1559082102"},
  "dataVersion":"1","metadataVersion":"1"}]`

func TestChange(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		cloud      bool
		want       string // the change, "" for none
		wantErr    string
	}{
		{name: "the documentation's sample", body: docSample, want: "sample-kv/secret/newsecret@ee059b2bb5bc48398a53b168c6cdcb10"},
		{name: "PascalCase, as Microsoft's model", body: `[{"id":"1","topic":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/KV1","subject":"k","eventType":"Microsoft.KeyVault.KeyNewVersionCreated","eventTime":"2026-01-01T00:00:00Z","data":{"Id":"x","VaultName":"KV1","ObjectType":"Key","ObjectName":"k","Version":"v1","NBF":null,"EXP":null},"dataVersion":"1","metadataVersion":"1"}]`,
			want: "kv1/key/k@v1"},
		{name: "camelCase", body: `[{"id":"2","eventType":"Microsoft.KeyVault.CertificateNewVersionCreated","eventTime":"2026-01-01T00:00:00Z","data":{"vaultName":"kv","objectType":"Certificate","objectName":"c","version":"v2"}}]`,
			want: "kv/certificate/c@v2"},
		{name: "CloudEvents", cloud: true, body: `{"specversion":"1.0","id":"3","source":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv","subject":"s","type":"Microsoft.KeyVault.SecretNewVersionCreated","time":"2026-01-01T00:00:00Z","data":{"VaultName":"kv","ObjectType":"Secret","ObjectName":"s","Version":"v3"}}`,
			want: "kv/secret/s@v3"},
		{name: "near expiry is no change", body: `[{"id":"4","eventType":"Microsoft.KeyVault.SecretNearExpiry","eventTime":"2026-01-01T00:00:00Z","data":{"VaultName":"kv","ObjectName":"s"}}]`},
		{name: "another vault's topic", body: `[{"id":"5","topic":"/subscriptions/s/providers/Microsoft.KeyVault/vaults/other","eventType":"Microsoft.KeyVault.SecretNewVersionCreated","eventTime":"2026-01-01T00:00:00Z","data":{"VaultName":"kv","ObjectName":"s"}}]`,
			wantErr: "comes from"},
		{name: "a key event about a secret", body: `[{"id":"6","eventType":"Microsoft.KeyVault.KeyNewVersionCreated","eventTime":"2026-01-01T00:00:00Z","data":{"VaultName":"kv","ObjectType":"Secret","ObjectName":"s"}}]`,
			wantErr: "is about a Secret"},
		{name: "no object", body: `[{"id":"7","eventType":"Microsoft.KeyVault.SecretNewVersionCreated","eventTime":"2026-01-01T00:00:00Z","data":{"VaultName":"kv"}}]`,
			wantErr: "names no vault or object"},
		{name: "data not an object", body: `[{"id":"8","eventType":"Microsoft.KeyVault.SecretNewVersionCreated","eventTime":"2026-01-01T00:00:00Z","data":[1]}]`,
			wantErr: "data"},
		{name: "name too long", body: `[{"id":"9","eventType":"Microsoft.KeyVault.SecretNewVersionCreated","eventTime":"2026-01-01T00:00:00Z","data":{"VaultName":"kv","ObjectName":"` + strings.Repeat("a", 200) + `"}}]`,
			wantErr: "too long"},
	} {
		parse := ParseEventGrid
		if tc.cloud {
			parse = ParseCloudEvents
		}
		evs, err := parse([]byte(tc.body))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		c, ok, err := evs[0].Change()
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: err %v, want ErrMalformed saying %q", tc.name, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want == "" && ok:
			t.Errorf("%s: change %s, want none", tc.name, c)
		case tc.want != "" && (!ok || c.String() != tc.want || c.ID != evs[0].ID || c.Time.IsZero()):
			t.Errorf("%s: change %s (ok %v, id %q), want %s with the event's id and time", tc.name, c, ok, c.ID, tc.want)
		}
		if ok {
			if err := c.Valid(); err != nil {
				t.Errorf("%s: an invalid change came out: %v", tc.name, err)
			}
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, body := range []string{`{}`, `[{"eventType":"x"}]`, `not json`, `[` + strings.Repeat(" ", maxBody) + `]`} {
		if _, err := ParseEventGrid([]byte(body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseEventGrid(%.20q): %v, want ErrMalformed", body, err)
		}
	}
	for _, body := range []string{`[{]`, `"x"`, `{"id": 1}`} {
		if _, err := ParseCloudEvents([]byte(body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseCloudEvents(%q): %v, want ErrMalformed", body, err)
		}
	}
}

func TestValidation(t *testing.T) {
	evs, err := ParseEventGrid([]byte(`[{"id":"v","topic":"t","subject":"","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","eventTime":"2026-01-01T00:00:00Z","data":{"validationCode":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6","validationUrl":"https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/x/validate?id=1&t=2"},"dataVersion":"2","metadataVersion":"1"}]`))
	if err != nil {
		t.Fatal(err)
	}
	v, err := ValidationOf(evs[0])
	if err != nil || v.Code != "512d38b6-c7b8-40c8-89fe-f46f9e9622b6" || !strings.Contains(v.URL, ":553/") {
		t.Fatalf("ValidationOf = %+v, %v", v, err)
	}
	if _, err := ValidationOf(Event{Type: TypeSecretNewVersion, Data: []byte(`{}`)}); err == nil {
		t.Fatal("a Key Vault event read as a validation")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(docSample), false)
	f.Add([]byte(`{"specversion":"1.0","id":"3","source":"/x/vaults/kv","type":"Microsoft.KeyVault.SecretNewVersionCreated","data":{"VaultName":"kv","ObjectName":"s"}}`), true)
	f.Fuzz(func(t *testing.T, body []byte, cloud bool) {
		parse := ParseEventGrid
		if cloud {
			parse = ParseCloudEvents
		}
		evs, err := parse(body)
		if err != nil {
			return
		}
		for _, e := range evs {
			c, ok, err := e.Change()
			if ok && err == nil {
				if verr := c.Valid(); verr != nil {
					t.Fatalf("invalid change from %q: %v", body, verr)
				}
				if _, kind := kinds[e.Type]; !kind {
					t.Fatalf("a change from event type %q", e.Type)
				}
			}
			_, _ = ValidationOf(e)
		}
	})
}
