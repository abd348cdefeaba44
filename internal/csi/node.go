package csi

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"kvmount.dev/kvmount/internal/atomicdir"
	"kvmount.dev/kvmount/internal/events"
	"kvmount.dev/kvmount/internal/refresh"
)

// Node is the CSI Node service.
type Node struct {
	csipb.UnimplementedNodeServer
	d *Driver
}

var _ csipb.NodeServer = (*Node)(nil)

// NodeGetInfo names the node; volumes are not limited per node.
func (s *Node) NodeGetInfo(context.Context, *csipb.NodeGetInfoRequest) (*csipb.NodeGetInfoResponse, error) {
	return &csipb.NodeGetInfoResponse{NodeId: s.d.cfg.NodeID}, nil
}

// NodeGetCapabilities advertises VOLUME_MOUNT_GROUP only: kubelet then
// hands the pod's fsGroup to the driver, which makes the files the group's
// (a read-only tmpfs cannot be chown'd afterwards, so kubelet never applies
// fsGroup to these volumes itself). No stage/unstage, no stats.
func (s *Node) NodeGetCapabilities(context.Context, *csipb.NodeGetCapabilitiesRequest) (*csipb.NodeGetCapabilitiesResponse, error) {
	return &csipb.NodeGetCapabilitiesResponse{Capabilities: []*csipb.NodeServiceCapability{{
		Type: &csipb.NodeServiceCapability_Rpc{Rpc: &csipb.NodeServiceCapability_RPC{Type: csipb.NodeServiceCapability_RPC_VOLUME_MOUNT_GROUP}},
	}}}, nil
}

// NodePublishVolume mounts (or refreshes) a pod's secrets: validate, then
// publish, recording the outcome; the gRPC code is chosen in toStatus.
func (s *Node) NodePublishVolume(ctx context.Context, req *csipb.NodePublishVolumeRequest) (*csipb.NodePublishVolumeResponse, error) {
	start := s.d.cfg.Now()
	m, err := parsePublish(req)
	if err != nil {
		s.d.cfg.Metrics.publishError("", "InvalidArgument")
		return nil, toStatus(err, m)
	}
	v := s.d.acquire(req.GetVolumeId())
	res, err := s.d.publish(ctx, m, v)
	if err == nil {
		s.d.remember(v, m)
	}
	// A failed first mount leaves nothing mounted, and kubelet does not
	// unpublish what it never saw mounted: its state would stay forever.
	s.d.release(req.GetVolumeId(), v, err == nil || res.remount)
	err = toStatus(err, m)
	s.d.record(m, res, err, time.Since(start))
	if err != nil {
		return nil, err
	}
	return &csipb.NodePublishVolumeResponse{}, nil
}

// NodeUnpublishVolume removes the files, unmounts the tmpfs and removes
// the target; a volume already gone is success.
func (s *Node) NodeUnpublishVolume(ctx context.Context, req *csipb.NodeUnpublishVolumeRequest) (*csipb.NodeUnpublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID is required")
	}
	if req.GetTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "target path is required")
	}
	start := s.d.cfg.Now()
	v := s.d.acquire(req.GetVolumeId())
	err := atomicdir.Unmount(req.GetTargetPath())
	s.d.release(req.GetVolumeId(), v, err != nil)
	s.d.cfg.Metrics.unpublish(err == nil, time.Since(start))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "unmount %s: %v", req.GetTargetPath(), err)
	}
	s.d.cfg.Logger.Debug("unpublished", "volume", req.GetVolumeId())
	return &csipb.NodeUnpublishVolumeResponse{}, nil
}

// mountRequest is a validated NodePublishVolume.
type mountRequest struct {
	volumeID, target, class string
	pod                     podRef
	// context holds kubelet's keys of the volume context only.
	context map[string]string
	// ignored are the volumeAttributes the pod set beyond
	// secretProviderClass: never passed on (see kubeletKeys).
	ignored []string
	secrets map[string]string
	// group is the pod's fsGroup, which kubelet passes as the volume
	// mount group (VOLUME_MOUNT_GROUP); atomicdir.NoGroup when unset.
	group int
	// refresh is set on a refresh the driver pushes (push.go), never by
	// kubelet.
	refresh *refresh.Request
}

type podRef struct {
	name, namespace, uid string
}

func (p podRef) ref() events.Pod { return events.Pod{Name: p.name, Namespace: p.namespace, UID: p.uid} }

const tokensKey = "csi.storage.k8s.io/serviceAccount.tokens"

// kubeletKeys are the volume-context keys kubelet sets (pod info, the
// service-account tokens of the CSIDriver's tokenRequests, the inline
// volume marker) and the class name, which the pod names. Nothing else a
// pod writes into volumeAttributes reaches the provider: upstream merges
// them over the class's parameters, which lets a pod author switch the
// vault or the identity mode (to the node's managed identity, say) that
// the class's owner chose.
var kubeletKeys = []string{"secretProviderClass", "csi.storage.k8s.io/pod.name", "csi.storage.k8s.io/pod.namespace",
	"csi.storage.k8s.io/pod.uid", "csi.storage.k8s.io/serviceAccount.name", "csi.storage.k8s.io/ephemeral", tokensKey}

func parsePublish(req *csipb.NodePublishVolumeRequest) (mountRequest, error) {
	m := mountRequest{volumeID: req.GetVolumeId(), target: req.GetTargetPath(), secrets: req.GetSecrets(), group: atomicdir.NoGroup}
	switch {
	case m.volumeID == "":
		return m, &requestError{"volume ID is required"}
	case m.target == "":
		return m, &requestError{"target path is required"}
	case req.GetVolumeCapability() == nil:
		return m, &requestError{"volume capability is required"}
	case req.GetVolumeCapability().GetBlock() != nil:
		return m, &requestError{"secrets-store volumes are file systems, not block devices"}
	case !req.GetReadonly():
		return m, &requestError{"secrets-store volumes must be read-only: set readOnly: true on the pod's csi volume"}
	}
	if g := req.GetVolumeCapability().GetMount().GetVolumeMountGroup(); g != "" {
		gid, err := strconv.Atoi(g)
		if err != nil || gid < 0 {
			return m, &requestError{fmt.Sprintf("volume mount group %q is not a group ID: the pod's securityContext.fsGroup must be a number", g)}
		}
		m.group = gid
	}
	m.context, m.ignored = splitContext(req.GetVolumeContext())
	m.class = m.context["secretProviderClass"]
	if m.class == "" {
		return m, &requestError{"volumeAttributes.secretProviderClass is required: name the SecretProviderClass to mount"}
	}
	m.pod = podRef{name: m.context["csi.storage.k8s.io/pod.name"], namespace: m.context["csi.storage.k8s.io/pod.namespace"], uid: m.context["csi.storage.k8s.io/pod.uid"]}
	if m.pod.name == "" || m.pod.namespace == "" {
		return m, &requestError{"pod information missing from the volume context: the CSIDriver needs podInfoOnMount: true"}
	}
	// Kubernetes 1.35+ may deliver service-account tokens among the
	// secrets; providers expect them in the attributes, and the secrets
	// to hold nodePublishSecretRef only.
	if tok, ok := m.secrets[tokensKey]; ok {
		m.context[tokensKey] = tok
		m.secrets = maps.Clone(m.secrets)
		delete(m.secrets, tokensKey)
	}
	return m, nil
}

// splitContext keeps kubelet's keys and names the others, sorted.
func splitContext(vc map[string]string) (map[string]string, []string) {
	kept := make(map[string]string, len(vc))
	var ignored []string
	for k, v := range vc {
		if slices.Contains(kubeletKeys, k) {
			kept[k] = v
		} else {
			ignored = append(ignored, k)
		}
	}
	slices.Sort(ignored)
	return kept, ignored
}

// codeOf is the gRPC code an error leaves with, for metrics.
func codeOf(err error) string {
	if err == nil {
		return "OK"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return codes.DeadlineExceeded.String()
	}
	return strings.ReplaceAll(status.Code(err).String(), " ", "")
}
