// Package serve holds what kvmount's daemons (the CSI driver, the Azure
// provider, the sync controller) share about running: an HTTP server for
// /healthz, /metrics or pprof that fails loudly when its port is taken, and a
// gRPC interceptor that keeps one request's panic from ending the process.
package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// HTTP runs h until ctx ends, over TLS when h.TLSConfig is set. A listen
// failure (port taken) is returned, unlike upstream's health servers,
// which swallowed it.
func HTTP(ctx context.Context, h *http.Server) error {
	ln, err := net.Listen("tcp", h.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", h.Addr, err)
	}
	if h.TLSConfig != nil {
		ln = tls.NewListener(ln, h.TLSConfig)
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = h.Shutdown(sctx)
	}()
	if err := h.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
