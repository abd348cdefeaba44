package csi

import (
	"context"

	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// registration answers kubelet's plugin watcher, which finds the socket in
// its plugins_registry directory: what replaces the node-driver-registrar
// sidecar.
type registration struct {
	registerapi.UnimplementedRegistrationServer
	name, endpoint string
	d              *Driver
}

// GetInfo tells kubelet the driver's name and CSI socket.
func (r *registration) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{Type: registerapi.CSIPlugin, Name: r.name, Endpoint: r.endpoint, SupportedVersions: []string{"1.0.0"}}, nil
}

// NotifyRegistrationStatus logs kubelet's verdict; a refusal is logged as
// an error with kubelet's reason, since no pod can mount until it is fixed.
func (r *registration) NotifyRegistrationStatus(_ context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if s.GetPluginRegistered() {
		r.d.cfg.Logger.Info("registered with kubelet", "driver", r.name)
	} else {
		r.d.cfg.Logger.Error("kubelet refused the registration", "driver", r.name, "reason", s.GetError())
	}
	r.d.registered.Store(s.GetPluginRegistered())
	return &registerapi.RegistrationStatusResponse{}, nil
}
