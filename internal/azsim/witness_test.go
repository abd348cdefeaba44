package azsim_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestWitnessImportsNoProduct: azsim checks the product, so no package of
// azsim (and no package of its command) may import a product package: a
// rule shared with the product would be wrong the same way on both sides,
// and the tests would pass. Only the client side that tools use to reach
// azsim (azsim.NewTransport, in client.go) is shared, and it lives in
// azsim.
func TestWitnessImportsNoProduct(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "kvmount.dev/kvmount/internal/azsim/...", "kvmount.dev/kvmount/cmd/azsim").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := []string{"kvmount.dev/kvmount/internal/azsim", "kvmount.dev/kvmount/cmd/azsim", "kvmount.dev/kvmount/internal/pki",
		"kvmount.dev/kvmount/internal/version", "kvmount.dev/kvmount/internal/httpclient"}
	checked := 0
	for _, pkg := range strings.Fields(string(out)) {
		if !strings.HasPrefix(pkg, "kvmount.dev/kvmount/") {
			continue
		}
		checked++
		ok := false
		for _, a := range allowed {
			if pkg == a || strings.HasPrefix(pkg, a+"/") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("azsim depends on product package %s", pkg)
		}
	}
	if checked < 5 {
		t.Errorf("only %d kvmount packages listed: the check proves little", checked)
	}
}
