// Command provider-azure is the Azure Key Vault provider for the Secrets
// Store CSI driver: it serves the provider API on a unix socket and answers
// Mount with the files of a SecretProviderClass's Key Vault objects. It
// takes every flag of the upstream Azure provider (v1.8) with the same
// meaning, so upstream's DaemonSet runs it unchanged.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	// The provider's image is an empty base with no CA bundle: these roots
	// (Mozilla's, as Go ships them) are used only when the host or image has
	// none, so that Key Vault and Entra ID on real Azure still verify.
	_ "golang.org/x/crypto/x509roots/fallback"

	"kvmount.dev/kvmount/internal/azure/provider"
	"kvmount.dev/kvmount/internal/logs"
	"kvmount.dev/kvmount/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	logs.Flush()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "provider-azure:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	c, err := parse(args, os.Stdout)
	if err != nil {
		return err
	}
	if c.version {
		fmt.Println(version.JSON())
		return nil
	}
	log, err := c.logs.Logger()
	if err != nil {
		return err
	}
	return provider.RunWithLogger(ctx, c.run, log)
}
