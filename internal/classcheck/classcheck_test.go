package classcheck

import (
	"strconv"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		file string
		want []string // "line severity substring"
	}{
		{"testdata/good.yaml", nil},
		{"testdata/mistakes.yaml", []string{
			"8 error parameters.usePodIdentity is a bool",
			"25 warning did you mean objectVersion?",
			"29 error '..' is not allowed",
			"39 error set csi.readOnly: true",
			"39 warning volumeAttributes keyvaultName are ignored",
			"39 error is in namespace apps, the pod in default",
		}},
		{"testdata/several.yaml", []string{
			"11 error is not a key vault name",
			"16 error is not one of secret, key, cert",
			"19 error absolute paths are not allowed",
		}},
		{"testdata/list.yaml", []string{
			"11 warning \"keyvaultNam\" is not one the Azure provider reads, and is ignored (as upstream ignores it): did you mean keyvaultName?",
			"18 error objectType \"sekret\" is not one of secret, key, cert",
		}},
		{"testdata/workload-identity.yaml", []string{
			"19 error add tokenRequests: [{audience: api://AzureADTokenExchange}]",
			"34 error give the volume a nodePublishSecretRef",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			docs, problems := Read([]string{tt.file}, nil)
			if len(problems) > 0 {
				t.Fatal(problems)
			}
			got := Check(docs)
			var errs []Finding
			for _, f := range got {
				if f.Severity != Info {
					errs = append(errs, f)
				}
			}
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d findings, want %d:\n%s", len(errs), len(tt.want), join(got))
			}
			for i, w := range tt.want {
				parts := strings.SplitN(w, " ", 3)
				f := errs[i]
				if itoa(f.Line) != parts[0] || string(f.Severity) != parts[1] || !strings.Contains(f.Message, parts[2]) {
					t.Errorf("finding %d: %s, want %s", i, f, w)
				}
			}
			if Failed(got) != (len(tt.want) > 0 && strings.Contains(strings.Join(tt.want, " "), "error")) {
				t.Errorf("Failed() = %v", Failed(got))
			}
		})
	}
}

func join(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

// FuzzCheck: any manifest text is read and checked without a panic.
func FuzzCheck(f *testing.F) {
	f.Add([]byte("kind: SecretProviderClass\napiVersion: secrets-store.csi.x-k8s.io/v1\nspec: {provider: azure, parameters: {objects: 'array: [1]'}}"))
	f.Add([]byte("kind: Pod\nspec: {volumes: [{csi: {driver: secrets-store.csi.k8s.io}}]}\n---\nkind: CronJob\nspec: 3"))
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		_ = Check(docs)
	})
}

// TestCheckSecretSync: a SecretSync is checked with the controller's rules
// (the CRD's), for misspelt fields the API server would drop, and against
// its class: each sourcePath must be a file the class mounts.
func TestCheckSecretSync(t *testing.T) {
	docs, err := Read([]string{"testdata/secretsync.yaml"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"35 error sourcePath \"tls-cert\" is not a file of SecretProviderClass app-kv (it mounts db-password, cert)",
		"37 error keys under secrets-store.sync.x-k8s.io are the controller's",
		"39 warning did you mean forceSynchronization?",
	}
	var got []Finding
	for _, f := range Check(docs) {
		if f.Severity != Info {
			got = append(got, f)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d findings, want %d:\n%s", len(got), len(want), join(got))
	}
	for i, w := range want {
		parts := strings.SplitN(w, " ", 3)
		f := got[i]
		if itoa(f.Line) != parts[0] || string(f.Severity) != parts[1] || !strings.Contains(f.Message, parts[2]) {
			t.Errorf("finding %d: %s, want %s", i, f, w)
		}
	}
}

// TestReadContinues: a file that cannot be parsed, and one that does not
// exist, are findings, and the other files are still checked.
func TestReadContinues(t *testing.T) {
	docs, problems := Read([]string{"testdata/broken.yaml.txt", "testdata/missing.yaml", "testdata/several.yaml"}, nil)
	if len(problems) != 2 || problems[0].Severity != Error || !strings.Contains(problems[0].Message, "the other files were checked") {
		t.Fatalf("problems %v: want the broken and the missing file", problems)
	}
	if len(docs) == 0 || !Failed(Check(docs)) {
		t.Fatal("the good file after the broken one was not checked")
	}
}
