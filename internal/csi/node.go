package csi

import (
	"context"
	"errors"
	"strings"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"kvmount.dev/kvmount/internal/atomicdir"
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

// NodeGetCapabilities advertises nothing: no stage/unstage, no stats.
func (s *Node) NodeGetCapabilities(context.Context, *csipb.NodeGetCapabilitiesRequest) (*csipb.NodeGetCapabilitiesResponse, error) {
	return &csipb.NodeGetCapabilitiesResponse{}, nil
}

// NodePublishVolume mounts (or refreshes) a pod's secrets: validate, then
// publish, recording the outcome.
func (s *Node) NodePublishVolume(ctx context.Context, req *csipb.NodePublishVolumeRequest) (*csipb.NodePublishVolumeResponse, error) {
	start := s.d.cfg.Now()
	m, err := parsePublish(req)
	if err != nil {
		s.d.cfg.Metrics.publishError("", "InvalidArgument")
		return nil, err
	}
	v := s.d.volumeState(req.GetVolumeId())
	v.mu.Lock()
	defer v.mu.Unlock()
	res, err := s.d.publish(ctx, m, v)
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
	v := s.d.volumeState(req.GetVolumeId())
	v.mu.Lock()
	err := atomicdir.Unmount(req.GetTargetPath())
	v.mu.Unlock()
	if err != nil {
		s.d.cfg.Metrics.unpublish(false)
		return nil, status.Errorf(codes.Internal, "unmount %s: %v", req.GetTargetPath(), err)
	}
	s.d.forget(req.GetVolumeId())
	s.d.cfg.Metrics.unpublish(true)
	s.d.cfg.Logger.Info("unpublished", "volume", req.GetVolumeId())
	return &csipb.NodeUnpublishVolumeResponse{}, nil
}

// mountRequest is a validated NodePublishVolume.
type mountRequest struct {
	volumeID, target, class string
	pod                     podRef
	context                 map[string]string
	secrets                 map[string]string
}

type podRef struct {
	name, namespace, uid string
}

const tokensKey = "csi.storage.k8s.io/serviceAccount.tokens"

func parsePublish(req *csipb.NodePublishVolumeRequest) (mountRequest, error) {
	m := mountRequest{volumeID: req.GetVolumeId(), target: req.GetTargetPath(), context: req.GetVolumeContext(), secrets: req.GetSecrets()}
	switch {
	case m.volumeID == "":
		return m, status.Error(codes.InvalidArgument, "volume ID is required")
	case m.target == "":
		return m, status.Error(codes.InvalidArgument, "target path is required")
	case req.GetVolumeCapability() == nil:
		return m, status.Error(codes.InvalidArgument, "volume capability is required")
	case req.GetVolumeCapability().GetBlock() != nil:
		return m, status.Error(codes.InvalidArgument, "secrets-store volumes are file systems, not block devices")
	case !req.GetReadonly():
		return m, status.Error(codes.InvalidArgument, "secrets-store volumes must be read-only: set readOnly: true on the pod's csi volume")
	}
	m.class = m.context["secretProviderClass"]
	if m.class == "" {
		return m, status.Error(codes.InvalidArgument, "volumeAttributes.secretProviderClass is required: name the SecretProviderClass to mount")
	}
	m.pod = podRef{name: m.context["csi.storage.k8s.io/pod.name"], namespace: m.context["csi.storage.k8s.io/pod.namespace"], uid: m.context["csi.storage.k8s.io/pod.uid"]}
	if m.pod.name == "" || m.pod.namespace == "" {
		return m, status.Error(codes.InvalidArgument, "pod information missing from the volume context: the CSIDriver needs podInfoOnMount: true")
	}
	// Kubernetes 1.35+ may deliver service-account tokens among the
	// secrets; providers expect them in the attributes, and the secrets
	// to hold nodePublishSecretRef only.
	if tok, ok := m.secrets[tokensKey]; ok {
		m.context = copyWith(m.context, tokensKey, tok)
		m.secrets = copyWithout(m.secrets, tokensKey)
	}
	return m, nil
}

func copyWith(m map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for a, b := range m {
		out[a] = b
	}
	out[k] = v
	return out
}

func copyWithout(m map[string]string, k string) map[string]string {
	out := make(map[string]string, len(m))
	for a, b := range m {
		if a != k {
			out[a] = b
		}
	}
	return out
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
