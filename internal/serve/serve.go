// Package serve holds what kvmount's daemons (the CSI driver, the Azure
// provider) share about running: an HTTP server for /healthz or /metrics
// that fails loudly when its port is taken, and the structured logger.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"
)

// HTTP runs h until ctx ends. A listen failure (port taken) is returned,
// unlike upstream's health servers, which swallowed it.
func HTTP(ctx context.Context, h *http.Server) error {
	ln, err := net.Listen("tcp", h.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", h.Addr, err)
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

// Logger is a text or JSON logger on stderr, at debug level when asked.
func Logger(jsonFormat, debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	if jsonFormat {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
