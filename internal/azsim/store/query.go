package store

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// FindPrincipal finds a principal by object ID or client ID, the two IDs
// `az keyvault set-policy --spn` and IMDS accept.
func FindPrincipal(tx *Tx, id string) (Principal, error) {
	id = strings.ToLower(strings.TrimSpace(id))
	if p, err := Get[Principal](tx, BucketPrincipals, id); err == nil {
		return p, nil
	}
	all, err := List[Principal](tx, BucketPrincipals, "")
	if err != nil {
		return Principal{}, err
	}
	for _, p := range all {
		if strings.EqualFold(p.ClientID, id) {
			return p, nil
		}
	}
	return Principal{}, fmt.Errorf("principal %q: %w", id, ErrNotFound)
}

// FindUserAssigned finds a user-assigned identity by its resource ID.
func FindUserAssigned(tx *Tx, resourceID string) (Principal, error) {
	all, err := List[Principal](tx, BucketPrincipals, "")
	if err != nil {
		return Principal{}, err
	}
	for _, p := range all {
		if p.Kind == KindUserAssigned && strings.EqualFold(p.ResourceID, resourceID) {
			return p, nil
		}
	}
	return Principal{}, fmt.Errorf("user-assigned identity %q: %w", resourceID, ErrNotFound)
}

// PutPrincipal stores p under its object ID.
func PutPrincipal(tx *Tx, p Principal) error {
	return Put(tx, BucketPrincipals, Path(p.ObjectID), p)
}

// UserAssignedResourceID is the ARM resource ID of a user-assigned identity.
func UserAssignedResourceID(sub, rg, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourcegroups/%s/providers/Microsoft.ManagedIdentity/userAssignedIdentities/%s", sub, rg, name)
}

// MachineResourceID is the ARM resource ID of a VM or VM scale set.
func MachineResourceID(sub string, m Machine) string {
	kind := "virtualMachines"
	if m.ScaleSet {
		kind = "virtualMachineScaleSets"
	}
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/%s/%s", sub, m.ResourceGroup, kind, m.Name)
}

// MachineKey is a machine's store key.
func MachineKey(scaleSet bool, rg, name string) string {
	kind := "vm"
	if scaleSet {
		kind = "vmss"
	}
	return Path(kind, rg, name)
}

// Versions lists every version of one object in creation order.
func Versions[T interface {
	Secret | Key | Certificate
	ObjectSeq() uint64
}](tx *Tx, bucket, vault, name string) ([]T, error) {
	vs, err := List[T](tx, bucket, Path(vault, name)+"/")
	if err != nil {
		return nil, err
	}
	slices.SortFunc(vs, func(a, b T) int { return cmp.Compare(a.ObjectSeq(), b.ObjectSeq()) })
	return vs, nil
}

// ObjectSeq orders versions of one object by creation.
func (s Secret) ObjectSeq() uint64      { return s.Seq }
func (k Key) ObjectSeq() uint64         { return k.Seq }
func (c Certificate) ObjectSeq() uint64 { return c.Seq }

// ObjectKey is the store key of one object version.
func ObjectKey(vault, name, version string) string { return Path(vault, name, version) }

// ObjectVersion and ObjectAttributes give Key Vault's generic code one view
// of the three object kinds.
func (s Secret) ObjectVersion() string      { return s.Version }
func (k Key) ObjectVersion() string         { return k.Version }
func (c Certificate) ObjectVersion() string { return c.Version }

func (s Secret) ObjectAttributes() Attributes      { return s.Attributes }
func (k Key) ObjectAttributes() Attributes         { return k.Attributes }
func (c Certificate) ObjectAttributes() Attributes { return c.Attributes }

func (s Secret) objectName() string      { return s.Name }
func (k Key) objectName() string         { return k.Name }
func (c Certificate) objectName() string { return c.Name }

// Latest returns the newest version of every object in a vault's bucket,
// in name order.
func Latest[T interface {
	Secret | Key | Certificate
	ObjectSeq() uint64
	objectName() string
}](tx *Tx, bucket, vault string) ([]T, error) {
	all, err := List[T](tx, bucket, Path(vault)+"/")
	if err != nil {
		return nil, err
	}
	var out []T
	for _, o := range all { // key order groups each name's versions together
		if n := len(out); n > 0 && strings.EqualFold(out[n-1].objectName(), o.objectName()) {
			if o.ObjectSeq() > out[n-1].ObjectSeq() {
				out[n-1] = o
			}
			continue
		}
		out = append(out, o)
	}
	return out, nil
}
