// Package arm is azsim's control plane: the `az`-shaped admin verbs of each
// resource provider, one file each (Key Vault, managed identities and Entra
// applications, compute, AKS with its identity bindings and pod
// identities), over the store. The server runs them for the CLI (its admin
// API) and in process (Server.Admin); what a verb needs of the server, the
// endpoints a resource brings up with it, comes through Host.
package arm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"k8s.io/client-go/dynamic"

	"kvmount.dev/kvmount/internal/azsim/eventgrid"
	"kvmount.dev/kvmount/internal/azsim/keyvault"
	"kvmount.dev/kvmount/internal/azsim/store"
)

// Host is what the verbs need of the server: a machine's IMDS and a
// cluster's NMI endpoints come up with the resource, and pod identity
// writes to the cluster.
type Host interface {
	EnsureIMDS(m store.Machine) error
	EnsureNMI(c store.Cluster) error
	IMDSURL(instance string) (string, error)
	Kube() (dynamic.Interface, error)
}

// Env is the cloud the verbs act on.
type Env struct {
	db    *store.DB
	cloud store.Cloud
	kv    *keyvault.Handler
	eg    *eventgrid.Broker
	host  Host
}

// New returns the verbs' view of a cloud: its store, its tenant and
// subscription, Key Vault's data plane (objects are written through it, as
// the service writes them) and Event Grid's broker.
func New(db *store.DB, cloud store.Cloud, kv *keyvault.Handler, eg *eventgrid.Broker, host Host) *Env {
	return &Env{db: db, cloud: cloud, kv: kv, eg: eg, host: host}
}

// AdminError is a verb's failure, shaped for `ERROR: (Code) message`.
type AdminError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *AdminError) Error() string { return fmt.Sprintf("(%s) %s", e.Code, e.Message) }

func notFound(format string, args ...any) error {
	return &AdminError{Status: http.StatusNotFound, Code: "ResourceNotFound", Message: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) error {
	return &AdminError{Status: http.StatusBadRequest, Code: "InvalidArgument", Message: fmt.Sprintf(format, args...)}
}

// verb runs one verb with its JSON arguments.
type verb func(ctx context.Context, e *Env, args json.RawMessage) (any, error)

// verbs maps the `az`-shaped command names to their implementations.
var verbs = map[string]verb{}

// register adds a verb whose arguments decode into A.
func register[A any](name string, f func(ctx context.Context, e *Env, a A) (any, error)) {
	verbs[name] = func(ctx context.Context, e *Env, raw json.RawMessage) (any, error) {
		var a A
		if len(raw) > 0 {
			dec := json.NewDecoder(strings.NewReader(string(raw)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&a); err != nil {
				return nil, invalid("arguments of %q: %v", name, err)
			}
		}
		return f(ctx, e, a)
	}
}

// Has reports whether name is a verb of this package.
func Has(name string) bool { _, ok := verbs[name]; return ok }

// Run runs verb name with its JSON arguments.
func (e *Env) Run(ctx context.Context, name string, raw json.RawMessage) (any, error) {
	f, ok := verbs[name]
	if !ok {
		return nil, &AdminError{Status: http.StatusNotFound, Code: "UnknownCommand", Message: fmt.Sprintf("%q is not an azsim command", name)}
	}
	return f(ctx, e, raw)
}

// FromEventGrid turns Event Grid's error into a verb's.
func FromEventGrid(out any, err error) (any, error) {
	var eg *eventgrid.Error
	if errors.As(err, &eg) {
		return nil, &AdminError{Status: eg.Status, Code: eg.Code, Message: eg.Message}
	}
	return out, err
}

// update runs fn in a store transaction.
func (e *Env) update(fn func(tx *store.Tx) error) error { return e.db.Update(fn) }

// view runs fn in a read-only store transaction.
func (e *Env) view(fn func(tx *store.Tx) error) error { return e.db.View(fn) }

func required(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if strings.TrimSpace(pairs[i+1]) == "" {
			return invalid("the following arguments are required: %s", pairs[i])
		}
	}
	return nil
}

// VaultID is vault v's resource ID.
func (e *Env) VaultID(v store.Vault) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.KeyVault/vaults/%s", e.cloud.SubscriptionID, v.ResourceGroup, v.Name)
}
