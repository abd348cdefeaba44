package arm

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/dynamic"

	"kvmount.dev/kvmount/internal/azsim/eventgrid"
	"kvmount.dev/kvmount/internal/azsim/keyvault"
	"kvmount.dev/kvmount/internal/azsim/store"
)

// recordingHost records the endpoints the verbs bring up.
type recordingHost struct {
	imds []string
	nmi  []string
}

func (h *recordingHost) EnsureIMDS(m store.Machine) error {
	for i := range max(m.Instances, 1) {
		h.imds = append(h.imds, InstanceKey(m, i))
	}
	return nil
}

func (h *recordingHost) EnsureNMI(c store.Cluster) error {
	h.nmi = append(h.nmi, c.Name)
	return nil
}

func (h *recordingHost) IMDSURL(instance string) (string, error) {
	return "https://imds.test/" + instance, nil
}

func (h *recordingHost) Kube() (dynamic.Interface, error) {
	return nil, &AdminError{Status: 400, Code: "InvalidArgument", Message: "no cluster"}
}

func testEnv(t *testing.T) (*Env, *recordingHost) {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "azsim.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cloud := store.Cloud{TenantID: "tenant-1", SubscriptionID: "sub-1"}
	h := &recordingHost{}
	kv := keyvault.New(keyvault.Config{DB: db, DNSSuffix: "vault.test", SubscriptionID: cloud.SubscriptionID})
	return New(db, cloud, kv, eventgrid.New(eventgrid.Config{DB: db, SubscriptionID: cloud.SubscriptionID}), h), h
}

func run(t *testing.T, e *Env, verb string, args any) (map[string]any, error) {
	t.Helper()
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.Run(context.Background(), verb, raw)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(out)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m, nil
}

// TestRefusals: every refusal is az's shape, with the status and code a
// client acts on, and a message naming the argument or the fix.
func TestRefusals(t *testing.T) {
	e, _ := testEnv(t)
	if _, err := run(t, e, "keyvault create", VaultArgs{Name: "kv1", ResourceGroup: "rg"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, verb string
		args       any
		status     int
		code, says string
	}{
		{"unknown verb", "keyvault purge", nil, 404, "UnknownCommand", `"keyvault purge" is not an azsim command`},
		{"unknown argument", "keyvault show", map[string]any{"name": "kv1", "vault": "x"}, 400, "InvalidArgument", `unknown field "vault"`},
		{"missing argument", "keyvault create", VaultArgs{Name: "kv2"}, 400, "InvalidArgument", "--resource-group/-g"},
		{"vault name", "keyvault create", VaultArgs{Name: "a--b", ResourceGroup: "rg"}, 400, "InvalidArgument", "without consecutive hyphens"},
		{"vault taken", "keyvault create", VaultArgs{Name: "KV1", ResourceGroup: "rg"}, 409, "VaultAlreadyExists", "already in use"},
		{"no vault", "keyvault secret set", SecretArgs{VaultName: "nope", Name: "s", Value: "v"}, 404, "ResourceNotFound", "azsim keyvault create -n nope"},
		{"policy without principal", "keyvault set-policy", PolicyArgs{Name: "kv1"}, 400, "InvalidArgument", "--object-id"},
		{"bad permission", "keyvault set-policy", PolicyArgs{Name: "kv1", ObjectID: "o", Secrets: &[]string{"read"}}, 400, "InvalidArgument", "--secret-permissions: invalid choice: 'read'"},
		{"no machine", "vmss identity assign", AssignArgs{ResourceGroup: "rg", Name: "vmss"}, 404, "ResourceNotFound", "virtualMachineScaleSets/vmss"},
		{"too many instances", "vmss create", MachineArgs{ResourceGroup: "rg", Name: "big", InstanceCount: 101}, 400, "InvalidArgument", "between 1 and 100"},
		{"no cluster", "aks show", AKSArgs{ResourceGroup: "rg", Name: "aks"}, 404, "ResourceNotFound", "managedClusters/aks"},
		{"pod identity without a cluster", "aks pod-identity add", PodIdentityArgs{ResourceGroup: "rg", ClusterName: "aks", Namespace: "ns", Name: "id", IdentityResourceID: "/x"}, 400, "InvalidArgument", "no cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(t, e, tc.verb, tc.args)
			var ae *AdminError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v, want an AdminError", err)
			}
			if ae.Status != tc.status || ae.Code != tc.code || !strings.Contains(ae.Message, tc.says) {
				t.Errorf("got %d %s %q; want %d %s saying %q", ae.Status, ae.Code, ae.Message, tc.status, tc.code, tc.says)
			}
		})
	}
}

// TestAKSCreate: a cluster comes with its node pool's scale set, one IMDS
// per node and its NMI, the kubelet identity and the add-on's, both
// assigned to the scale set, as AKS shows them.
func TestAKSCreate(t *testing.T) {
	e, h := testEnv(t)
	out, err := run(t, e, "aks create", AKSArgs{ResourceGroup: "rg", Name: "aks", NodeCount: 3, EnableAddons: "azure-keyvault-secrets-provider"})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.imds) != 3 || len(h.nmi) != 1 || h.nmi[0] != "aks" {
		t.Errorf("endpoints: IMDS %v, NMI %v; want 3 and the cluster's", h.imds, h.nmi)
	}
	nodeRG, _ := out["nodeResourceGroup"].(string)
	if nodeRG != "MC_rg_aks_westus2" {
		t.Errorf("node resource group %q", nodeRG)
	}
	kubelet, _ := out["identityProfile"].(map[string]any)["kubeletidentity"].(map[string]any)
	addon, _ := out["addonProfiles"].(map[string]any)["azureKeyvaultSecretsProvider"].(map[string]any)
	if kubelet["clientId"] == nil || addon["identity"] == nil {
		t.Fatalf("identities missing: %v", out)
	}
	sets, err := run(t, e, "vmss list", MachineArgs{ResourceGroup: nodeRG})
	if err != nil {
		t.Fatal(err)
	}
	list, _ := sets["value"].([]any)
	if len(list) != 1 {
		t.Fatalf("scale sets %v", sets)
	}
	ua, _ := list[0].(map[string]any)["identity"].(map[string]any)["userAssignedIdentities"].(map[string]any)
	if len(ua) != 2 {
		t.Errorf("scale set identities %v, want the kubelet's and the add-on's", ua)
	}
	if _, err := run(t, e, "aks show", AKSArgs{ResourceGroup: "rg", Name: "aks"}); err != nil {
		t.Errorf("aks show: %v", err)
	}
}

// TestComputerName: instance names as AKS names its nodes — the scale
// set's name and a 6-digit base-36 instance ID.
func TestComputerName(t *testing.T) {
	for _, tc := range []struct {
		i    int
		want string
	}{{0, "vmss000000"}, {9, "vmss000009"}, {10, "vmss00000a"}, {35, "vmss00000z"}, {36, "vmss000010"}, {36 * 36, "vmss000100"}} {
		if got := ComputerName("vmss", tc.i); got != tc.want {
			t.Errorf("ComputerName(vmss, %d) = %s, want %s", tc.i, got, tc.want)
		}
	}
}
