// Command images builds kvmount's container images offline: static Go
// binaries on an empty base, no image pulled from anywhere, as OCI image
// indexes (linux/amd64 and linux/arm64) written as OCI archives, with OCI
// labels (source, revision, version) and fixed timestamps, so that two
// builds of one commit give the same digests. It also builds the images
// the local cluster needs and cannot pull: a pause image (tools/images/pause)
// and busybox from the host's busybox-static, tagged as the seed's pod
// names it.
//
//	go run ./tools/images --out bin/images --version v0.1.0
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var cfg config
	fs := flag.NewFlagSet("images", flag.ExitOnError)
	fs.StringVar(&cfg.root, "root", ".", "the kvmount source tree")
	fs.StringVar(&cfg.out, "out", "bin/images", "where the OCI archives and digests.txt go")
	fs.StringVar(&cfg.repo, "repo", "ghcr.io/kvmount", "registry and namespace of kvmount's images")
	fs.StringVar(&cfg.version, "version", "v0.1.0", "version: the image tag and the binaries' --version")
	fs.StringVar(&cfg.revision, "revision", "", "source revision for the labels (default: git rev-parse HEAD)")
	fs.StringVar(&cfg.source, "source", "https://github.com/kvmount/kvmount", "source repository for the labels")
	platforms := fs.String("platforms", "linux/amd64,linux/arm64", "platforms of kvmount's images")
	fs.StringVar(&cfg.busybox, "busybox", "/bin/busybox", "a static busybox for the local cluster's busybox image (Debian's busybox-static)")
	fs.BoolVar(&cfg.productOnly, "product-only", false, "build only kvmount's two images (a release)")
	fs.BoolVar(&cfg.push, "push", false, "push kvmount's images to --repo after building them (credentials of docker login); implies --product-only")
	fs.Parse(os.Args[1:])
	cfg.platforms = strings.Split(*platforms, ",")
	cfg.productOnly = cfg.productOnly || cfg.push
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}
