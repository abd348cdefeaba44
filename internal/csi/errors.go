package csi

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"kvmount.dev/kvmount/internal/providers"
)

// The driver's failures, by kind; toStatus alone turns them into gRPC
// codes, at the Node service's boundary.
type (
	// requestError is a NodePublishVolume the driver cannot serve as sent.
	requestError struct{ msg string }
	// classError is a SecretProviderClass that cannot be used.
	classError struct{ msg string }
	// apiError is the API server failing a request the mount needs.
	apiError struct {
		what string
		err  error
	}
	// localError is the node failing the driver (tmpfs, file writes).
	localError struct {
		what string
		err  error
	}
	// providerError is a provider call that failed.
	providerError struct {
		provider string
		code     codes.Code
		msg      string
	}
)

func (e *requestError) Error() string  { return e.msg }
func (e *classError) Error() string    { return e.msg }
func (e *apiError) Error() string      { return e.what + ": " + e.err.Error() }
func (e *apiError) Unwrap() error      { return e.err }
func (e *localError) Error() string    { return e.what + ": " + e.err.Error() }
func (e *localError) Unwrap() error    { return e.err }
func (e *providerError) Error() string { return e.msg }

// toStatus is the one place where the driver's errors get their gRPC code.
// A provider's own code and message pass through unchanged: they are
// written for the user, and kubelet treats codes differently (Unavailable
// and DeadlineExceeded leave a mount "uncertain", others are final).
func toStatus(err error, m mountRequest) error {
	var re *requestError
	var ce *classError
	var ae *apiError
	var le *localError
	var pe *providerError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re), errors.As(err, &ce):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, errClassNotFound):
		return status.Errorf(codes.NotFound, "SecretProviderClass %s not found in namespace %s: create it there (a class must be in the pod's namespace)", m.class, m.pod.namespace)
	case errors.As(err, &ae):
		return status.Errorf(codes.Unavailable, "%v (the API server; kubelet will retry)", err)
	case errors.As(err, &pe):
		// kubelet's FailedMount Event shows this message: it names the
		// class, as the provider's explanation does not.
		return status.Error(pe.code, fmt.Sprintf("SecretProviderClass %s: %s", m.class, pe.msg))
	case errors.As(err, &le):
		return status.Error(codes.Internal, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// providerFailure explains a failed provider call: a missing provider, a
// stalled one, a response over the size limit, or the provider's own
// status, kept as it is.
func (d *Driver) providerFailure(provider string, m mountRequest, err error) error {
	where := fmt.Sprintf("SecretProviderClass %s/%s (pod %s/%s)", m.pod.namespace, m.class, m.pod.namespace, m.pod.name)
	st, isStatus := status.FromError(err)
	switch {
	case errors.Is(err, providers.ErrNotFound), errors.Is(err, providers.ErrInvalidName):
		return &providerError{provider, codes.FailedPrecondition, fmt.Sprintf("%v (for %s)", err, where)}
	case errors.Is(err, context.DeadlineExceeded) || (isStatus && st.Code() == codes.DeadlineExceeded && !fromProvider(st)):
		return &providerError{provider, codes.DeadlineExceeded, fmt.Sprintf("provider %s did not answer within %s for %s: check the provider's log on node %s", provider, d.cfg.ProviderTimeout, where, d.cfg.NodeID)}
	case isStatus && st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), "received message larger than max"):
		return &providerError{provider, codes.ResourceExhausted, fmt.Sprintf("provider %s's response for %s is larger than the driver's --max-call-recv-msg-size (%s): raise the flag (Helm value maxCallRecvMsgSize) or split the class", provider, where, st.Message())}
	case isStatus:
		return &providerError{provider, st.Code(), st.Message()}
	}
	return &providerError{provider, codes.Unknown, fmt.Sprintf("provider %s: %v", provider, err)}
}

// fromProvider reports whether a DeadlineExceeded came from the provider
// (which explains its own timeouts) rather than from the driver's call
// deadline, which gRPC reports as "context deadline exceeded".
func fromProvider(st *status.Status) bool {
	return !strings.Contains(st.Message(), "context deadline exceeded")
}
