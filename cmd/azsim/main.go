// Command azsim is the local Azure cloud: `azsim serve` runs Key Vault,
// Entra ID, IMDS and the pod-identity NMI; the other commands are shaped like
// `az` and change the running cloud.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"kvmount.dev/kvmount/internal/azsim/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ERROR:", err)
		os.Exit(1)
	}
}
