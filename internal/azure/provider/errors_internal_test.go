package provider

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"kvmount.dev/kvmount/internal/azure/config"
	"kvmount.dev/kvmount/internal/azure/identity"
	"kvmount.dev/kvmount/internal/azure/keyvault"
)

// TestMountStatusKeepsObjectsWhole: a mount whose many objects fail gets a
// message that fits a pod Event with the driver's prefix, lists the first
// objects whole and counts the rest, instead of being cut mid-object.
func TestMountStatusKeepsObjectsWhole(t *testing.T) {
	for _, n := range []int{2, 3, 12, 40} {
		me := &keyvault.MountError{}
		for i := range n {
			name := fmt.Sprintf("a-rather-long-secret-name-number-%02d-for-the-payments-service", i)
			me.Objects = append(me.Objects, &keyvault.ObjectError{Object: config.Object{Name: name, Type: config.TypeSecret},
				Vault: "https://kv.vault.azure.net", Err: &azcore.ResponseError{StatusCode: http.StatusNotFound}})
		}
		st := status.Convert(mountStatus(me, config.Config{VaultName: "kv"}, identity.Principal{}))
		msg := st.Message()
		if st.Code() != codes.NotFound || len(msg) > maxMessage {
			t.Fatalf("%d objects: code %v, %d bytes (limit %d)", n, st.Code(), len(msg), maxMessage)
		}
		shown := 0
		for i := range n {
			name := fmt.Sprintf("number-%02d-for-the-payments-service\" does not exist", i)
			if strings.Contains(msg, name) {
				shown++
			}
		}
		if shown == 0 || strings.Count(msg, "does not exist") != shown {
			t.Errorf("%d objects: %d shown whole, %d mentioned: an object was cut: %s", n, shown, strings.Count(msg, "does not exist"), msg)
		}
		if more := n - shown; more > 0 && !strings.HasSuffix(msg, fmt.Sprintf("(and %d more)", more)) {
			t.Errorf("%d objects, %d shown: the message does not end with (and %d more): %s", n, shown, more, msg)
		}
	}
}

// TestNMIRefusalCause: NMI reports any failure as 403 with IMDS's answer in
// its text; IMDS throttling or failing is a retry, not a missing
// assignment, and the message says so.
func TestNMIRefusalCause(t *testing.T) {
	cfg := config.Config{Mode: config.ModePodIdentity, Pod: config.Pod{Name: "p", Namespace: "ns"}}
	tests := []struct {
		body       string
		code       codes.Code
		want, dont string
	}{
		{"failed to get service principal token for pod:ns/p, error: IMDS answered 429: {\"error\":\"too_many_requests\"}", codes.Unavailable, "throttling or failing", "vmss identity assign"},
		{"failed to get service principal token for pod:ns/p, error: adal: Refresh request failed. Status Code = '429'. Response body: Too many requests", codes.Unavailable, "kubelet will retry", "vmss identity assign"},
		{"failed to get service principal token for pod:ns/p, error: IMDS answered 503: busy", codes.Unavailable, "throttling or failing", "vmss identity assign"},
		{"failed to get service principal token for pod:ns/p, error: IMDS answered 400: {\"error_description\":\"Identity not found\"}", codes.PermissionDenied, "az vmss identity assign", "kubelet will retry"},
	}
	for _, tt := range tests {
		st := status.Convert(identityStatus(&identityError{mode: cfg.Mode, err: &identity.NMIError{Status: 403, Body: tt.body, Pod: cfg.Pod}}, cfg))
		if st.Code() != tt.code || !strings.Contains(st.Message(), tt.want) || strings.Contains(st.Message(), tt.dont) {
			t.Errorf("NMI said %q: got %v %q; want %v with %q and without %q", tt.body, st.Code(), st.Message(), tt.code, tt.want, tt.dont)
		}
	}
}
