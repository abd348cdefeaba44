package clusterbench

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"kvmount.dev/kvmount/internal/localenv"
)

func (b *bench) az(ctx context.Context, verb string, args map[string]any) (map[string]any, error) {
	out, err := b.env.Azsim(ctx, verb, args)
	if err != nil {
		return nil, fmt.Errorf("azsim %s: %w", verb, err)
	}
	return out, nil
}

// setup makes the vault, the objects, the identities (assigned to the node
// pool and granted), the classes and the kube clients.
func (b *bench) setup(ctx context.Context) error {
	rc, err := b.env.Cluster.RESTConfig()
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 200, 400
	if b.kube, err = kubernetes.NewForConfig(rc); err != nil {
		return err
	}
	if b.dyn, err = dynamic.NewForConfig(rc); err != nil {
		return err
	}
	if _, err := b.az(ctx, "keyvault create", map[string]any{"name": vault, "resourceGroup": localenv.ResourceGroup}); err != nil {
		return err
	}
	for o := range b.cfg.Objects {
		if _, err := b.az(ctx, "keyvault secret set", map[string]any{"vaultName": vault, "name": objectName(o), "value": "v0-" + strconv.Itoa(o)}); err != nil {
			return err
		}
	}
	nodeRG, vmss, err := b.env.NodePool(ctx)
	if err != nil {
		return err
	}
	var clientIDs []string
	for i := range b.cfg.Identities {
		id, err := b.az(ctx, "identity create", map[string]any{"resourceGroup": localenv.ResourceGroup, "name": "bench-id-" + strconv.Itoa(i)})
		if err != nil {
			return err
		}
		if _, err := b.az(ctx, "vmss identity assign", map[string]any{"resourceGroup": nodeRG, "name": vmss, "identities": []string{id["id"].(string)}}); err != nil {
			return err
		}
		if _, err := b.az(ctx, "keyvault set-policy", map[string]any{"name": vault, "spn": id["clientId"], "secretPermissions": []string{"get"}}); err != nil {
			return err
		}
		clientIDs = append(clientIDs, id["clientId"].(string))
	}
	for c := range b.cfg.Classes {
		if err := b.env.Cluster.Apply(ctx, b.classYAML(c, clientIDs[c%len(clientIDs)])); err != nil {
			return err
		}
	}
	return nil
}

func objectName(o int) string { return "s" + strconv.Itoa(o) }

func (b *bench) classYAML(c int, clientID string) []byte {
	var objs strings.Builder
	for o := range b.cfg.Objects {
		fmt.Fprintf(&objs, "        - |\n          objectName: %s\n          objectType: secret\n", objectName(o))
	}
	return []byte(fmt.Sprintf(`apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: bench-%d, namespace: default}
spec:
  provider: azure
  parameters:
    useVMManagedIdentity: "true"
    userAssignedIdentityID: %s
    keyvaultName: %s
    tenantId: %s
    objects: |
      array:
%s`, c, clientID, vault, b.env.TenantID, objs.String()))
}
