// Command fakecri serves the Kubernetes CRI fake runtime on a unix socket so
// that a real kubelet can run pods without a container runtime: sandboxes and
// containers exist only as records, but kubelet still mounts every volume.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	kubeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-client/pkg/fake"
)

func main() {
	endpoint := flag.String("endpoint", "", "unix socket to serve the CRI on, e.g. unix:///run/kvmount/node-0/cri.sock")
	flag.Parse()
	if err := run(*endpoint); err != nil {
		fmt.Fprintln(os.Stderr, "fakecri:", err)
		os.Exit(1)
	}
}

func run(endpoint string) error {
	if endpoint == "" {
		return fmt.Errorf("--endpoint is required (unix:///path/to/cri.sock)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rt := fake.NewFakeRemoteRuntime()
	// kubelet's image garbage collector and eviction manager ask for the
	// image filesystem; an empty answer makes them log errors every few
	// seconds, so report a small, real-looking one.
	rt.ImageService.SetFakeFilesystemUsage([]*kubeapi.FilesystemUsage{{
		Timestamp:  1,
		FsId:       &kubeapi.FilesystemIdentifier{Mountpoint: "/"},
		UsedBytes:  &kubeapi.UInt64Value{Value: 0},
		InodesUsed: &kubeapi.UInt64Value{Value: 0},
	}})
	if err := rt.Start(endpoint); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "fakecri: serving", endpoint)
	<-ctx.Done()
	rt.Stop()
	return nil
}
