package arm

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	"kvmount.dev/kvmount/internal/azsim/store"
)

func init() {
	register("vm create", func(ctx context.Context, s *Env, a MachineArgs) (any, error) { return s.machineCreate(a, false) })
	register("vmss create", func(ctx context.Context, s *Env, a MachineArgs) (any, error) { return s.machineCreate(a, true) })
	register("vm identity assign", func(ctx context.Context, s *Env, a AssignArgs) (any, error) { return s.identityAssign(a, false) })
	register("vmss identity assign", func(ctx context.Context, s *Env, a AssignArgs) (any, error) { return s.identityAssign(a, true) })
	register("vm identity show", func(ctx context.Context, s *Env, a MachineArgs) (any, error) {
		return s.identityShowMachine(a, false)
	})
	register("vmss identity show", func(ctx context.Context, s *Env, a MachineArgs) (any, error) {
		return s.identityShowMachine(a, true)
	})
	register("vmss list-instances", vmssListInstances)
	register("vmss list", vmssList)
	register("aks create", aksCreate)
	register("aks show", aksShow)
}

// MachineArgs names a VM or scale set.
type MachineArgs struct {
	ResourceGroup string `json:"resourceGroup"`
	Name          string `json:"name"`
	// InstanceCount is a new scale set's size (default 2).
	InstanceCount int `json:"instanceCount,omitempty"`
	// AssignIdentity enables the system-assigned identity at creation.
	AssignIdentity bool `json:"assignIdentity,omitempty"`
}

func (s *Env) machineCreate(a MachineArgs, scaleSet bool) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	if scaleSet && a.InstanceCount == 0 {
		a.InstanceCount = 2
	}
	if a.InstanceCount < 0 || a.InstanceCount > 100 {
		return nil, invalid("--instance-count %d: choose between 1 and 100", a.InstanceCount)
	}
	m := store.Machine{Name: a.Name, ResourceGroup: a.ResourceGroup, ScaleSet: scaleSet, Instances: a.InstanceCount}
	err := s.update(func(tx *store.Tx) error {
		key := store.MachineKey(scaleSet, a.ResourceGroup, a.Name)
		if _, err := store.Get[store.Machine](tx, store.BucketMachines, key); err == nil {
			return invalid("%s %s already exists in resource group %s", kindName(scaleSet), a.Name, a.ResourceGroup)
		}
		if a.AssignIdentity {
			if err := s.enableSystem(tx, &m); err != nil {
				return err
			}
		}
		return store.Put(tx, store.BucketMachines, key, m)
	})
	if err != nil {
		return nil, err
	}
	if err := s.host.EnsureIMDS(m); err != nil {
		return nil, err
	}
	return s.machineJSON(m), nil
}

func kindName(scaleSet bool) string {
	if scaleSet {
		return "virtual machine scale set"
	}
	return "virtual machine"
}

// enableSystem gives m a system-assigned identity unless it has one.
func (s *Env) enableSystem(tx *store.Tx, m *store.Machine) error {
	if m.SystemAssigned != "" {
		return nil
	}
	p := store.Principal{ObjectID: store.NewGUID(), ClientID: store.NewGUID(), TenantID: s.cloud.TenantID,
		Kind: store.KindSystemAssigned, Name: m.Name, Owner: store.MachineResourceID(s.cloud.SubscriptionID, *m)}
	m.SystemAssigned = p.ObjectID
	return store.PutPrincipal(tx, p)
}

// AssignArgs assigns identities to a VM or scale set: resource IDs or names
// of user-assigned identities, and "[system]" for the system-assigned one.
// No identity at all means the system-assigned one, as in az.
type AssignArgs struct {
	ResourceGroup string   `json:"resourceGroup"`
	Name          string   `json:"name"`
	Identities    []string `json:"identities,omitempty"`
}

func (s *Env) identityAssign(a AssignArgs, scaleSet bool) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	ids := a.Identities
	if len(ids) == 0 {
		ids = []string{"[system]"}
	}
	var m store.Machine
	err := s.update(func(tx *store.Tx) error {
		var err error
		if m, err = s.machine(tx, scaleSet, a.ResourceGroup, a.Name); err != nil {
			return err
		}
		for _, id := range ids {
			if err := s.assignOne(tx, &m, a.ResourceGroup, id); err != nil {
				return err
			}
		}
		return store.Put(tx, store.BucketMachines, store.MachineKey(scaleSet, a.ResourceGroup, a.Name), m)
	})
	if err != nil {
		return nil, err
	}
	out := s.identityOf(m)
	return map[string]any{"systemAssignedIdentity": out["principalId"], "userAssignedIdentities": out["userAssignedIdentities"]}, nil
}

func (s *Env) assignOne(tx *store.Tx, m *store.Machine, rg, id string) error {
	if strings.EqualFold(id, "[system]") {
		return s.enableSystem(tx, m)
	}
	rid := id
	if !strings.HasPrefix(id, "/") {
		rid = store.UserAssignedResourceID(s.cloud.SubscriptionID, rg, id)
	}
	p, err := store.FindUserAssigned(tx, rid)
	if err != nil {
		return notFound("The user-assigned identity '%s' was not found; create it with `azsim identity create -g %s -n <name>`.", id, rg)
	}
	rid = strings.ToLower(p.ResourceID)
	if !slices.Contains(m.UserAssigned, rid) {
		m.UserAssigned = append(m.UserAssigned, rid)
	}
	return nil
}

func (s *Env) machine(tx *store.Tx, scaleSet bool, rg, name string) (store.Machine, error) {
	m, err := store.Get[store.Machine](tx, store.BucketMachines, store.MachineKey(scaleSet, rg, name))
	if errors.Is(err, store.ErrNotFound) {
		kind := "virtualMachines"
		if scaleSet {
			kind = "virtualMachineScaleSets"
		}
		return m, notFound("The Resource 'Microsoft.Compute/%s/%s' under resource group '%s' was not found.", kind, name, rg)
	}
	return m, err
}

func (s *Env) identityShowMachine(a MachineArgs, scaleSet bool) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	var m store.Machine
	err := s.view(func(tx *store.Tx) error {
		var err error
		m, err = s.machine(tx, scaleSet, a.ResourceGroup, a.Name)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.identityOf(m), nil
}

// identityOf is the machine's `identity` block as ARM shows it.
func (s *Env) identityOf(m store.Machine) map[string]any {
	out := map[string]any{"type": "None"}
	var types []string
	_ = s.view(func(tx *store.Tx) error {
		if m.SystemAssigned != "" {
			types = append(types, "SystemAssigned")
			out["principalId"], out["tenantId"] = m.SystemAssigned, s.cloud.TenantID
		}
		ua := map[string]any{}
		for _, rid := range m.UserAssigned {
			if p, err := store.FindUserAssigned(tx, rid); err == nil {
				ua[p.ResourceID] = map[string]string{"clientId": p.ClientID, "principalId": p.ObjectID}
			}
		}
		if len(ua) > 0 {
			types = append(types, "UserAssigned")
			out["userAssignedIdentities"] = ua
		}
		return nil
	})
	if len(types) > 0 {
		out["type"] = strings.Join(types, ", ")
	}
	return out
}

func (s *Env) machineJSON(m store.Machine) map[string]any {
	out := map[string]any{"id": store.MachineResourceID(s.cloud.SubscriptionID, m), "name": m.Name,
		"resourceGroup": m.ResourceGroup, "identity": s.identityOf(m)}
	if m.ScaleSet {
		out["sku"] = map[string]any{"capacity": m.Instances}
	}
	return out
}

// vmssList lists the scale sets of a resource group (an AKS node resource
// group holds the node pool's).
func vmssList(_ context.Context, s *Env, a MachineArgs) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup); err != nil {
		return nil, err
	}
	var ms []store.Machine
	if err := s.view(func(tx *store.Tx) error {
		var err error
		ms, err = store.List[store.Machine](tx, store.BucketMachines, store.MachineKey(true, a.ResourceGroup, ""))
		return err
	}); err != nil {
		return nil, err
	}
	var list []map[string]any
	for _, m := range ms {
		list = append(list, s.machineJSON(m))
	}
	return map[string]any{"value": list}, nil
}

func vmssListInstances(_ context.Context, s *Env, a MachineArgs) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	var m store.Machine
	if err := s.view(func(tx *store.Tx) error {
		var err error
		m, err = s.machine(tx, true, a.ResourceGroup, a.Name)
		return err
	}); err != nil {
		return nil, err
	}
	var list []map[string]any
	for i := range m.Instances {
		url, _ := s.host.IMDSURL(InstanceKey(m, i))
		list = append(list, map[string]any{"instanceId": fmt.Sprint(i), "name": fmt.Sprintf("%s_%d", m.Name, i),
			"osProfile": map[string]any{"computerName": ComputerName(m.Name, i)}, "imdsEndpoint": url})
	}
	return map[string]any{"value": list}, nil
}

// InstanceKey names one machine instance: a VM, or instance i of a scale set.
func InstanceKey(m store.Machine, i int) string {
	if !m.ScaleSet {
		return store.MachineKey(false, m.ResourceGroup, m.Name)
	}
	return store.MachineKey(true, m.ResourceGroup, m.Name) + "/" + strconv.Itoa(i)
}

// ComputerName is instance i's host name, as AKS names its nodes:
// <scale set><6-digit base-36 instance id>.
func ComputerName(scaleSet string, i int) string {
	id := base36(i)
	return scaleSet + strings.Repeat("0", max(0, 6-len(id))) + id
}

func base36(n int) string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 36 {
		b = append([]byte{digits[n%36]}, b...)
	}
	return string(b)
}

// AKSArgs creates an AKS cluster record.
type AKSArgs struct {
	ResourceGroup string `json:"resourceGroup"`
	Name          string `json:"name"`
	Location      string `json:"location,omitempty"`
	NodeCount     int    `json:"nodeCount,omitempty"`
	EnableAddons  string `json:"enableAddons,omitempty"`
	// OIDCIssuer is the cluster's service-account issuer URL (the local
	// cluster's API server), shown as oidcIssuerProfile.issuerUrl.
	OIDCIssuer string `json:"oidcIssuerUrl,omitempty"`
}

// aksCreate records a cluster: its node resource group, a node pool scale
// set with one IMDS per node, the kubelet identity, and for the
// azure-keyvault-secrets-provider add-on its own identity, both assigned to
// the scale set as AKS does.
func aksCreate(_ context.Context, s *Env, a AKSArgs) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	a.Location = orDefault(a.Location, "westus2")
	if a.NodeCount == 0 {
		a.NodeCount = 2
	}
	nodeRG := fmt.Sprintf("MC_%s_%s_%s", a.ResourceGroup, a.Name, a.Location)
	h := fnv.New32a()
	h.Write([]byte(a.ResourceGroup + "/" + a.Name))
	vmss := fmt.Sprintf("aks-nodepool1-%08d-vmss", h.Sum32()%100000000)
	c := store.Cluster{Name: a.Name, ResourceGroup: a.ResourceGroup, NodeResourceGroup: nodeRG, ScaleSet: vmss, OIDCIssuer: a.OIDCIssuer}
	if _, err := s.machineCreate(MachineArgs{ResourceGroup: nodeRG, Name: vmss, InstanceCount: a.NodeCount}, true); err != nil {
		return nil, err
	}
	ids := []string{a.Name + "-agentpool"}
	for _, addon := range strings.Split(a.EnableAddons, ",") {
		if strings.TrimSpace(addon) == "azure-keyvault-secrets-provider" {
			ids = append(ids, "azurekeyvaultsecretsprovider-"+a.Name)
		}
	}
	for _, id := range ids {
		if _, err := identityCreate(context.Background(), s, IdentityArgs{ResourceGroup: nodeRG, Name: id, Location: a.Location}); err != nil {
			return nil, err
		}
	}
	if _, err := s.identityAssign(AssignArgs{ResourceGroup: nodeRG, Name: vmss, Identities: ids}, true); err != nil {
		return nil, err
	}
	if len(ids) > 1 {
		c.AddonIdentity = store.UserAssignedResourceID(s.cloud.SubscriptionID, nodeRG, ids[1])
	}
	err := s.update(func(tx *store.Tx) error {
		return store.Put(tx, store.BucketClusters, store.Path(a.ResourceGroup, a.Name), c)
	})
	if err != nil {
		return nil, err
	}
	if err := s.host.EnsureNMI(c); err != nil {
		return nil, err
	}
	return s.aksJSON(c, a.Location, a.NodeCount)
}

func aksShow(_ context.Context, s *Env, a AKSArgs) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	var c store.Cluster
	var m store.Machine
	err := s.view(func(tx *store.Tx) error {
		var err error
		if c, err = store.Get[store.Cluster](tx, store.BucketClusters, store.Path(a.ResourceGroup, a.Name)); err != nil {
			return notFound("The Resource 'Microsoft.ContainerService/managedClusters/%s' under resource group '%s' was not found.", a.Name, a.ResourceGroup)
		}
		m, err = s.machine(tx, true, c.NodeResourceGroup, c.ScaleSet)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.aksJSON(c, orDefault(a.Location, "westus2"), m.Instances)
}

func (s *Env) aksJSON(c store.Cluster, location string, nodes int) (map[string]any, error) {
	out := map[string]any{
		"id":                fmt.Sprintf("/subscriptions/%s/resourcegroups/%s/providers/Microsoft.ContainerService/managedClusters/%s", s.cloud.SubscriptionID, c.ResourceGroup, c.Name),
		"name":              c.Name,
		"resourceGroup":     c.ResourceGroup,
		"location":          location,
		"nodeResourceGroup": c.NodeResourceGroup,
		"agentPoolProfiles": []map[string]any{{"name": "nodepool1", "count": nodes, "vmSize": "Standard_DS2_v2", "osType": "Linux"}},
		"oidcIssuerProfile": map[string]any{"enabled": c.OIDCIssuer != "", "issuerUrl": c.OIDCIssuer},
		"addonProfiles":     map[string]any{},
	}
	kubelet, err := s.userAssigned(c.NodeResourceGroup, c.Name+"-agentpool")
	if err == nil {
		out["identityProfile"] = map[string]any{"kubeletidentity": map[string]any{"clientId": kubelet.ClientID, "objectId": kubelet.ObjectID, "resourceId": kubelet.ResourceID}}
	}
	if c.AddonIdentity != "" {
		var p store.Principal
		if err := s.view(func(tx *store.Tx) error {
			var err error
			p, err = store.FindUserAssigned(tx, c.AddonIdentity)
			return err
		}); err != nil {
			return nil, err
		}
		out["addonProfiles"] = map[string]any{"azureKeyvaultSecretsProvider": map[string]any{
			"enabled": true, "config": map[string]any{"enableSecretRotation": "false", "rotationPollInterval": "2m"},
			"identity": map[string]any{"clientId": p.ClientID, "objectId": p.ObjectID, "resourceId": p.ResourceID}}}
	}
	return out, nil
}
