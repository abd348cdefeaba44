package serve

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Recover is a gRPC interceptor that turns a panic in one request into that
// request's Internal error, so that a bug met by one pod's input fails that
// mount instead of ending the process and every later mount of the node.
// The log line carries the stack and, for runtime errors only, the panic's
// message: other panic values could hold request data, which is never
// logged.
func Recover(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				what := fmt.Sprintf("panic of type %T", p)
				if re, ok := p.(runtime.Error); ok {
					what = "panic: " + re.Error()
				}
				log.Error("request failed with a panic (a bug); the process goes on", "method", info.FullMethod, "what", what, "stack", string(debug.Stack()))
				resp, err = nil, status.Errorf(codes.Internal, "%s failed with an internal error (%s): this is a bug, please report it with this process's log; other requests are not affected", info.FullMethod, what)
			}
		}()
		return h(ctx, req)
	}
}
