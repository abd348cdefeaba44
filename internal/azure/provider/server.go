// Package provider is the Azure provider's gRPC face: the Secrets Store
// provider API (v1alpha1 Version and Mount). A Mount is validate → parse →
// resolve identity → fetch → respond; every failure leaves here as a gRPC
// status with a deliberate code and a message that tells the user what to
// change, chosen in one place (errors.go).
package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"kvmount.dev/kvmount/internal/atomicdir"
	"kvmount.dev/kvmount/internal/azure/config"
	"kvmount.dev/kvmount/internal/azure/identity"
	"kvmount.dev/kvmount/internal/azure/keyvault"
	"kvmount.dev/kvmount/internal/events"
	"kvmount.dev/kvmount/internal/version"
)

// Options wire the server.
type Options struct {
	Defaults   config.Defaults
	Identities *identity.Source
	Fetcher    *keyvault.Fetcher
	Logger     *slog.Logger
	Metrics    *Metrics
	// Events records the class's warnings on the pod (nil: logged only).
	Events *events.Recorder
	// MountTimeout bounds one Mount, below kubelet's two-minute CSI
	// deadline so that the user sees our error, not kubelet's timeout.
	MountTimeout time.Duration
}

// Server implements the provider API.
type Server struct {
	v1alpha1.UnimplementedCSIDriverProviderServer
	opts Options
}

var _ v1alpha1.CSIDriverProviderServer = (*Server)(nil)

// New returns a Server.
func New(opts Options) *Server {
	if opts.MountTimeout == 0 {
		opts.MountTimeout = 100 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{opts: opts}
}

// Version answers the driver's version handshake.
func (s *Server) Version(context.Context, *v1alpha1.VersionRequest) (*v1alpha1.VersionResponse, error) {
	return &v1alpha1.VersionResponse{Version: "v1alpha1", RuntimeName: "kvmount-provider-azure", RuntimeVersion: version.Version}, nil
}

// Mount fetches the class's objects and returns them as files.
func (s *Server) Mount(ctx context.Context, req *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.opts.MountTimeout)
	defer cancel()
	cfg, err := config.Parse(req.GetAttributes(), req.GetSecrets(), req.GetPermission(), s.opts.Defaults)
	republish := len(req.GetCurrentObjectVersion()) > 0
	var resp *v1alpha1.MountResponse
	var who identity.Principal
	if err == nil {
		if !republish {
			s.warn(ctx, cfg)
		}
		resp, who, err = s.mount(ctx, cfg, req.GetCurrentObjectVersion())
	}
	if err != nil {
		err = toStatus(err, cfg, who)
	}
	s.record(cfg, start, resp, err)
	return resp, err
}

// mount resolves the identity and fetches the objects, vault by vault;
// current are the volume's mounted versions, which the driver sends on a
// republish (a rotation, which the node cache may serve).
func (s *Server) mount(ctx context.Context, cfg config.Config, current []*v1alpha1.ObjectVersion) (*v1alpha1.MountResponse, identity.Principal, error) {
	republish := len(current) > 0
	mounted := make(map[string]string, len(current))
	for _, c := range current {
		mounted[c.GetId()] = c.GetVersion()
	}
	groups := vaultGroups(cfg)
	if len(groups) == 0 {
		// A class with an empty objects array: upstream answers with no
		// files, and so does kvmount (the pod was warned).
		return &v1alpha1.MountResponse{}, identity.Principal{}, nil
	}
	results := make([]groupResult, len(groups))
	if len(groups) == 1 {
		results[0] = s.fetchGroup(ctx, cfg, groups[0], republish, mounted)
	} else {
		var wg sync.WaitGroup
		for i, g := range groups {
			wg.Go(func() { results[i] = s.fetchGroup(ctx, cfg, g, republish, mounted) })
		}
		wg.Wait()
	}
	var files []keyvault.File
	var versions []keyvault.Version
	var me keyvault.MountError
	for _, r := range results {
		var gme *keyvault.MountError
		switch {
		case errors.As(r.err, &gme):
			me.Objects = append(me.Objects, gme.Objects...)
		case r.err != nil:
			return nil, r.who, r.err
		}
		files = append(files, r.files...)
		versions = append(versions, r.versions...)
	}
	who := results[0].who
	if len(me.Objects) > 0 {
		return nil, who, &me
	}
	s.reportMissing(ctx, cfg, versions, current)
	resp, err := response(files, versions)
	return resp, who, err
}

// vaultGroup is the objects a mount reads from one vault of one tenant.
type vaultGroup struct {
	vault, tenant string
	objects       []config.Object
}

// vaultGroups splits the class's objects by vault and tenant, in the
// class's order (one group unless objects name their own vaults).
func vaultGroups(cfg config.Config) []vaultGroup {
	var groups []vaultGroup
	at := map[string]int{}
	for _, o := range cfg.Objects {
		v, t := cfg.VaultOf(o), cfg.TenantOf(o)
		k := strings.ToLower(v + "|" + t)
		i, ok := at[k]
		if !ok {
			i = len(groups)
			at[k] = i
			groups = append(groups, vaultGroup{vault: v, tenant: t})
		}
		groups[i].objects = append(groups[i].objects, o)
	}
	return groups
}

type groupResult struct {
	files    []keyvault.File
	versions []keyvault.Version
	who      identity.Principal
	err      error
}

// fetchGroup reads one vault's objects with the mount's identity in that
// vault's tenant; mounted are the volume's versions (a republish).
func (s *Server) fetchGroup(ctx context.Context, cfg config.Config, g vaultGroup, republish bool, mounted map[string]string) groupResult {
	gcfg := cfg
	gcfg.TenantID, gcfg.VaultName = g.tenant, g.vault
	cred, err := s.opts.Identities.ForMount(ctx, gcfg, republish)
	if err != nil {
		return groupResult{err: err}
	}
	// The mount's own identity must yield a token before any cached
	// object is served to it: the cache is keyed by the principal the
	// token names, so sharing never widens access.
	opts := policy.TokenRequestOptions{Scopes: []string{cfg.Cloud.KeyVaultResource + "/.default"}, TenantID: g.tenant}
	tok, err := cred.GetToken(ctx, opts)
	if err != nil {
		return groupResult{err: &identityError{mode: cfg.Mode, endpoint: cred.Endpoint, err: err}}
	}
	// The SDK asks the mount's credential again when its clients have no
	// token yet: it gets this one, not a second NMI or IMDS round trip.
	cred.TokenCredential = identity.Remember(cred.TokenCredential, opts, tok)
	who, ok := identity.PrincipalOf(tok.Token)
	if !ok {
		who = identity.Principal{ObjectID: "credential:" + cred.Key}
	}
	files, versions, err := s.opts.Fetcher.Fetch(ctx, keyvault.Request{VaultURL: cfg.Cloud.VaultURL(g.vault), VaultName: g.vault, Cred: cred, Principal: who,
		Objects: g.objects, Republish: republish, Refresh: cfg.Refresh, Current: mounted})
	return groupResult{files: files, versions: versions, who: who, err: err}
}

// reportMissing tells the pod which optional objects were left out and
// why: on a first mount, each missing one; on a rotation, those that were
// mounted and are no longer (deleted or disabled since: their files
// leave the volume). A rotation writes them when they appear again.
func (s *Server) reportMissing(ctx context.Context, cfg config.Config, versions []keyvault.Version, current []*v1alpha1.ObjectVersion) {
	pod := events.Pod{Name: cfg.Pod.Name, Namespace: cfg.Pod.Namespace, UID: cfg.Pod.UID}
	mounted := map[string]bool{}
	for _, c := range current {
		mounted[c.GetId()] = c.GetVersion() != ""
	}
	for _, v := range versions {
		if v.Missing == "" {
			continue
		}
		msg := fmt.Sprintf("optional object %s is not mounted: %s; its file appears when it can be read (rotation)", v.ID, v.Missing)
		gone := mounted[v.ID]
		switch {
		case len(current) == 0:
		case gone:
			msg = fmt.Sprintf("optional object %s is no longer mounted: %s; its file was removed from the volume and comes back when it can be read (rotation)", v.ID, v.Missing)
		default:
			continue // still missing: the pod was told
		}
		s.opts.Logger.Info("optional object missing", "pod", pod.Namespace+"/"+pod.Name, "object", v.ID, "why", v.Missing, "removed", gone)
		go s.opts.Events.Record(context.WithoutCancel(ctx), pod, events.Warning, "OptionalObjectMissing", msg)
	}
}

// warn tells the pod what its class does that upstream accepts but is
// probably a mistake, on first mounts only (rotations would repeat it
// every poll), without delaying the mount.
func (s *Server) warn(ctx context.Context, cfg config.Config) {
	if len(cfg.Warnings) == 0 {
		return
	}
	pod := events.Pod{Name: cfg.Pod.Name, Namespace: cfg.Pod.Namespace, UID: cfg.Pod.UID}
	for _, w := range cfg.Warnings {
		s.opts.Logger.Info("SecretProviderClass warning", "pod", pod.Namespace+"/"+pod.Name, "warning", w.String())
	}
	go func() {
		for _, w := range cfg.Warnings {
			s.opts.Events.Record(context.WithoutCancel(ctx), pod, events.Warning, "SecretProviderClassWarning", w.String())
		}
	}()
}

// response converts files and versions to the wire, checking once more
// that every path is valid and that all of them can exist together
// (.crt/.key files included), so the driver never meets a conflict.
func response(files []keyvault.File, versions []keyvault.Version) (*v1alpha1.MountResponse, error) {
	resp := &v1alpha1.MountResponse{}
	paths := make([]string, 0, len(files))
	at := map[string]int{}
	for _, f := range files {
		if err := config.ValidatePath(f.Path); err != nil {
			return nil, &config.Error{Field: "objects", Msg: fmt.Sprintf("file %q: %v", f.Path, err)}
		}
		file := &v1alpha1.File{Path: f.Path, Mode: int32(f.Mode), Contents: f.Contents}
		if i, dup := at[f.Path]; dup {
			// Written twice (the class was warned): the last one wins, as
			// upstream's driver writes it.
			resp.Files[i] = file
			continue
		}
		at[f.Path] = len(resp.Files)
		paths = append(paths, f.Path)
		resp.Files = append(resp.Files, file)
	}
	if err := atomicdir.CheckPaths(paths); err != nil {
		return nil, &config.Error{Field: "objects", Msg: fmt.Sprintf("%v (an objectAlias collides with a .crt/.key file): rename one", err)}
	}
	for _, v := range versions {
		resp.ObjectVersion = append(resp.ObjectVersion, &v1alpha1.ObjectVersion{Id: v.ID, Version: v.Version})
	}
	return resp, nil
}

// record logs and counts one mount. It never logs attributes, secrets,
// files or tokens: only who, where, how many, how long and the code.
func (s *Server) record(cfg config.Config, start time.Time, resp *v1alpha1.MountResponse, err error) {
	code := codeOf(err)
	d := time.Since(start)
	if s.opts.Metrics != nil {
		s.opts.Metrics.observe(code, d)
	}
	attrs := []any{"pod", cfg.Pod.Namespace + "/" + cfg.Pod.Name, "vault", cfg.VaultName, "mode", cfg.Mode.String(),
		"objects", len(cfg.Objects), "code", code.String(), "duration", d.Round(time.Millisecond)}
	if err != nil {
		s.opts.Logger.Warn("mount failed", append(attrs, "err", err)...)
		return
	}
	// Success is the common case: at the default level only failures are
	// logged, so that a node's log stays small and says what went wrong.
	s.opts.Logger.Debug("mounted", append(attrs, "files", len(resp.GetFiles()))...)
}
