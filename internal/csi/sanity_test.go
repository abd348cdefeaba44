package csi

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"kvmount.dev/kvmount/internal/providers"
)

// TestSanity runs csi-sanity against the driver over its socket. Skipped:
// the Controller service's tests (there is none), the stage tests (not
// advertised, ephemeral volumes are never staged), and the node tests that
// first create a volume through the Controller service.
func TestSanity(t *testing.T) {
	dir := t.TempDir()
	d := New(Config{NodeID: "sanity-node", Providers: providers.New([]string{dir}, 0),
		Dynamic: dynamicfake.NewSimpleDynamicClient(runtime.NewScheme())})
	ctx, cancel := context.WithCancel(context.Background())
	endpoint := "unix://" + filepath.Join(dir, "csi.sock")
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx, ServeConfig{Endpoint: endpoint}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	cfg := sanity.NewTestConfig()
	cfg.Address = endpoint
	cfg.TargetPath = filepath.Join(dir, "target")
	cfg.StagingPath = filepath.Join(dir, "staging")
	sanity.GinkgoTest(&cfg)
	gomega.RegisterFailHandler(ginkgo.Fail)
	suite, reporter := ginkgo.GinkgoConfiguration()
	suite.SkipStrings = []string{"Controller Service", "Controller Server", "NodeStageVolume", "NodeUnstageVolume", "should remove target path", "SingleNodeMultiWriter", "ListSnapshots", "DeleteSnapshot", "CreateSnapshot", "ExpandVolume", "ModifyVolume"}
	reporter.Succinct, reporter.NoColor = true, true
	ginkgo.RunSpecs(t, "csi-sanity", suite, reporter)
}
