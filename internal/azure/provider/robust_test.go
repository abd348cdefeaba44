package provider_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/arm"
)

// TestEmptyObjectsArray: a class whose objects array is empty mounts with
// no files, as upstream answers it, and the pod is warned; the provider
// keeps serving (it used to panic and exit, failing every later mount of
// the node).
func TestEmptyObjectsArray(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "v")
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{Name: "a"})
	grant(t, s, sp["appId"].(string))
	e := startProvider(t, s, cloudEnv, nil)
	for _, objects := range []string{"array: []", "array:\n", "array: [] # none yet"} {
		p := e.baseParams()
		p["objects"] = objects
		resp, err := e.mount(p, spCreds(sp))
		if err != nil {
			t.Fatalf("objects %q: %v", objects, err)
		}
		if len(resp.GetFiles()) != 0 || len(resp.GetObjectVersion()) != 0 {
			t.Errorf("objects %q: files %v, versions %v; want none", objects, resp.GetFiles(), resp.GetObjectVersion())
		}
	}
	if !strings.Contains(e.logs.String(), "objects has an empty array") {
		t.Errorf("no warning about the empty array in the log:\n%s", e.logs.String())
	}
	resp, err := e.mount(e.baseParams("objectName: secret1\nobjectType: secret"), spCreds(sp))
	if err != nil || string(filesOf(resp)["secret1"].GetContents()) != "v" {
		t.Fatalf("a mount after the empty class: %v, %v", resp, err)
	}
}

// FuzzMount sends arbitrary Mount requests through real gRPC to a running
// provider: whatever the attributes, secrets, permission and current
// versions, the answer is a response or a status with a deliberate code,
// never a panic (which the server would turn into Internal "panic") and
// never a dead process.
func FuzzMount(f *testing.F) {
	s, cloudEnv := newSim(f, azsim.Config{})
	vaultWithSecret(f, s, "v")
	sp := admin(f, s, "ad sp create-for-rbac", arm.SPArgs{Name: "a"})
	grant(f, s, sp["appId"].(string))
	e := startProvider(f, s, cloudEnv, nil)
	creds, _ := json.Marshal(spCreds(sp))
	base := func(objects string, extra ...string) string {
		p := e.baseParams()
		p["objects"] = objects
		for i := 0; i+1 < len(extra); i += 2 {
			p[extra[i]] = extra[i+1]
		}
		b, _ := json.Marshal(p)
		return string(b)
	}
	seeds := []struct{ attrs, secrets, perm, cur string }{
		{base(objectsYAML("objectName: secret1\nobjectType: secret")), string(creds), "420", ""},
		{base(objectsYAML("objectName: secret1\nobjectType: secret")), string(creds), "420", "secret/secret1"},
		{base("array: []"), string(creds), "420", ""},
		{base("array: []"), string(creds), "420", "x"},
		{base(objectsYAML("objectName: secret1\nobjectType: secret\nobjectVersionHistory: 3")), string(creds), "420", ""},
		{base(objectsYAML("objectName: secret1\nobjectType: secret\nkeyvaultName: other\ntenantId: t")), string(creds), "420", ""},
		{base(objectsYAML("objectName: secret1\nobjectType: secret\njsonFields: [a]")), string(creds), "420", ""},
		{base(objectsYAML("objectName: secret1\nobjectType: secret"), "useVMManagedIdentity", "true"), "{}", "420", ""},
		{base(objectsYAML("objectName: secret1\nobjectType: secret"), "usePodIdentity", "true"), "{}", "420", ""},
		{base(objectsYAML("objectName: secret1\nobjectType: secret"), "clientID", "x", "csi.storage.k8s.io/serviceAccount.tokens", `{"api://AzureADTokenExchange":{"token":"a.b.c"}}`), "{}", "420", ""},
		{base(objectsYAML("objectName: secret1\nobjectType: secret"), "useAzureTokenProxy", "true", "clientID", "x"), "{}", "420", ""},
		{`{}`, `{}`, `420`, ""},
		{`null`, `null`, `null`, ""},
		{`{"objects":"array:\n  - |\n    objectName: a\n    objectAlias: ../x"}`, ``, `"420"`, ""},
		{base("array:\n  - 1\n  - [a]\n  - {b: c}"), string(creds), "-1", ""},
	}
	for _, sd := range seeds {
		f.Add(sd.attrs, sd.secrets, sd.perm, sd.cur)
	}
	f.Fuzz(func(t *testing.T, attrs, secrets, perm, cur string) {
		req := &v1alpha1.MountRequest{Attributes: attrs, Secrets: secrets, Permission: perm, TargetPath: "/tmp/unused"}
		if cur != "" {
			req.CurrentObjectVersion = []*v1alpha1.ObjectVersion{{Id: cur, Version: "1"}}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := e.client.Mount(ctx, req)
		if st, _ := status.FromError(err); st.Code() == codes.Internal && strings.Contains(st.Message(), "panic") {
			t.Fatalf("Mount panicked: %v", st.Message())
		}
		if _, err := e.client.Version(ctx, &v1alpha1.VersionRequest{Version: "v1alpha1"}); err != nil {
			t.Fatalf("the provider stopped answering after that Mount: %v", err)
		}
	})
}
