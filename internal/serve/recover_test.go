package serve

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRecover(t *testing.T) {
	const canary = "canary-secret-value"
	tests := []struct {
		name    string
		handler grpc.UnaryHandler
		code    codes.Code
		logged  string
	}{
		{"ok", func(context.Context, any) (any, error) { return "fine", nil }, codes.OK, ""},
		{"error passes", func(context.Context, any) (any, error) { return nil, status.Error(codes.NotFound, "x") }, codes.NotFound, ""},
		{"runtime panic", func(context.Context, any) (any, error) {
			var s []int
			return s[3], nil
		}, codes.Internal, "index out of range"},
		{"panic with data", func(context.Context, any) (any, error) { panic(canary) }, codes.Internal, "panic of type string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			rec := Recover(slog.New(slog.NewTextHandler(&logs, nil)))
			_, err := rec(context.Background(), canary, &grpc.UnaryServerInfo{FullMethod: "/svc/Mount"}, tt.handler)
			if got := status.Code(err); got != tt.code {
				t.Fatalf("code %v (%v), want %v", got, err, tt.code)
			}
			if !strings.Contains(logs.String(), tt.logged) {
				t.Errorf("log %q lacks %q", logs.String(), tt.logged)
			}
			if strings.Contains(logs.String(), canary) || (err != nil && strings.Contains(err.Error(), canary)) {
				t.Errorf("the panic's value reached the log or the error: %v / %s", err, logs.String())
			}
		})
	}
}
