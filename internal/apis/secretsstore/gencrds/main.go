// Command gencrds writes the secrets-store CRDs generated from the Go types
// to the file named by its argument (deploy/crds/secrets-store.csi.x-k8s.io.yaml).
package main

import (
	"fmt"
	"os"

	"kvmount.dev/kvmount/internal/apis/secretsstore"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gencrds FILE")
		os.Exit(2)
	}
	b, err := secretsstore.CRDYAML()
	if err == nil {
		err = os.WriteFile(os.Args[1], b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gencrds:", err)
		os.Exit(1)
	}
}
