package azsim_test

import (
	"os/exec"
	"strings"
	"testing"

	"kvmount.dev/kvmount/internal/azsim"
)

// TestTokenProxyServerName checks azsim's own derivation of the token
// proxy's server name against vectors computed outside Go (Python:
// "a" + base64.b32hexencode(sha256(b"identity-binding" + id)).decode()
// .rstrip("=").lower() + ".ests.aks"), the same vectors the provider's
// rule is checked against: the two agree because both match the
// documented rule, not because one calls the other.
func TestTokenProxyServerName(t *testing.T) {
	for id, want := range map[string]string{
		"5f3c2a1b0e9d8c7b6a5f4e3d": "a5kb5mkbq4ago161h32u5ithg5mfenfs7bvenet59igfvvrlmig8g.ests.aks",
		"abc":                      "ar47lgcnhtn52tohpbtporqbc5cjfjah6gmfdpri09hpae1b0v370.ests.aks",
	} {
		if got := azsim.TokenProxyServerName(id); got != want {
			t.Errorf("TokenProxyServerName(%q) = %s, want %s", id, got, want)
		}
	}
}

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
