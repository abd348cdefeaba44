package provider_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/classcheck"
)

// TestCheckAgreesWithProvider: for every class of kvmount check's test
// manifests, the check reports an error exactly when the running provider
// refuses the class's mount as invalid (InvalidArgument), with the same
// message: the two share one parser and can never disagree.
func TestCheckAgreesWithProvider(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	e := startProvider(t, s, cloudEnv, nil)
	files, _ := filepath.Glob("../../classcheck/testdata/*.yaml")
	docs, problems := classcheck.Read(files, nil)
	if len(problems) > 0 || len(docs) == 0 {
		t.Fatalf("read %v: %v", files, problems)
	}
	findings := classcheck.Check(docs)
	compared := 0
	for _, r := range classcheck.Requests(docs) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := e.client.Mount(ctx, &v1alpha1.MountRequest{Attributes: r.Attributes, Secrets: r.Secrets, TargetPath: "/tmp/unused", Permission: "420"})
		cancel()
		r.Cleanup()
		var checkErr string
		for _, f := range findings {
			if f.Kind == "SecretProviderClass" && f.Name == r.Name && f.Namespace == r.Namespace && f.Severity == classcheck.Error {
				checkErr = f.Message
			}
		}
		st, _ := status.FromError(err)
		invalid := st.Code() == codes.InvalidArgument
		switch {
		case invalid && checkErr == "":
			t.Errorf("class %s/%s: the provider refuses it (%s), the check finds no error", r.Namespace, r.Name, st.Message())
		case !invalid && checkErr != "":
			t.Errorf("class %s/%s: the check finds %q, the provider answers %v", r.Namespace, r.Name, checkErr, err)
		case invalid && !strings.Contains(st.Message(), checkErr):
			t.Errorf("class %s/%s: the check says %q, the provider %q", r.Namespace, r.Name, checkErr, st.Message())
		}
		compared++
	}
	if compared < 4 {
		t.Fatalf("only %d classes compared", compared)
	}
}
