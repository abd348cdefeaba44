package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"kvmount.dev/kvmount/internal/localenv"
)

// files is `kvmount files <namespace>/<pod>`: it shows the files of the
// pod's secrets-store volumes as they are on its node.
func files(ctx context.Context, args []string, out io.Writer) error {
	var dir string
	fs := flag.NewFlagSet("kvmount files", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&dir, "dir", "/var/lib/kvmount/env", "the environment's directory")
	pos, err := parseVerb(fs, args, out, "kvmount files <namespace>/<pod> [--dir DIR]")
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: kvmount files <namespace>/<pod>", errUsage)
	}
	ns, name, ok := strings.Cut(pos[0], "/")
	if !ok {
		return fmt.Errorf("%w: kvmount files <namespace>/<pod>", errUsage)
	}
	st, err := localenv.ReadState(dir)
	if err != nil {
		return err
	}
	// The API server listens in the environment's network namespace (its
	// nodes' network): go there first, as `kvmount run` does, when this is
	// another one.
	if err := enterEnvNet(dir); err != nil {
		return err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", st.Kubeconfig)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	pod, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "pods"}).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	node, _, _ := unstructured.NestedString(pod.Object, "spec", "nodeName")
	for _, n := range st.Nodes {
		if n.Name != node {
			continue
		}
		vols, _ := filepath.Glob(filepath.Join(n.RootDir, "pods", string(pod.GetUID()), "volumes", "kubernetes.io~csi", "*", "mount"))
		if len(vols) == 0 {
			return fmt.Errorf("pod %s/%s on %s has no mounted CSI volume yet (kubectl describe pod shows why)", ns, name, node)
		}
		for _, v := range vols {
			showDir(out, v)
		}
		return nil
	}
	return fmt.Errorf("pod %s/%s is not on a node of this environment (node %q)", ns, name, node)
}

func showDir(out io.Writer, dir string) {
	fmt.Fprintf(out, "%s:\n", dir)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		fi, _ := os.Stat(p)
		b, _ := os.ReadFile(p)
		fmt.Fprintf(out, "--- %s (%v, %d bytes)\n%s\n", e.Name(), fi.Mode().Perm(), len(b), strings.TrimRight(string(b), "\n"))
	}
}
