// Command kvmount runs kvmount's local environment: `kvmount up` starts a real
// Kubernetes control plane and nodes running the chart's driver and provider
// in containers; `kvmount demo` plays the seed's identity scenarios on it.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"kvmount.dev/kvmount/internal/version"
)

const usage = `kvmount: Azure Key Vault secrets as files in Kubernetes pods, testable offline.

Usage:
  kvmount up [--nodes N] [--dir DIR] [--base-port PORT] [--runtime containerd|fake] [--kube-version 1.33]
                                                          start the local environment until interrupted
  kvmount run [--dir DIR] -- COMMAND [ARGS...]            run kubectl, azsim, … where the environment's network is
  kvmount demo [--keep] [--dir DIR]                       play the seed's three identity methods end to end
  kvmount files <namespace>/<pod> [--dir DIR]             show a pod's mounted secrets-store files
  kvmount refresh secretproviderclass/NAME|secretsync/NAME [-n NAMESPACE] [--kubeconfig FILE] [--context NAME]
                                                          read the objects from Key Vault now (needs patch on it)
  kvmount check -f FILE|DIR|- [-o text|json]               what the provider and driver would refuse or warn
                                                          about in SecretProviderClass and pod manifests
  kvmount version                                         print the version (also --version)
  kvmount bench provider --endpoint unix:///…/azure.sock (--request FILE | --class SPC --pod POD)
                         [-c N] [-d 10s | -n N] [--azsim-data-dir DIR --vault NAME]
                                                          load a provider socket and report latency
  kvmount bench cluster [--nodes N] [--pods P] [--classes C] [--identities I] [--objects O] [--polls R] [--push] [-o json]
                                                          what N nodes cost the API server, Key Vault and token issuance
`

// errUsage marks errors whose fix is reading the usage text.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if errors.Is(err, errHelp) {
		return
	}
	if errors.Is(err, errCheckFailed) {
		os.Exit(1)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvmount:", err)
		if errors.Is(err, errUsage) {
			fmt.Fprint(os.Stderr, "\n"+usage)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command given", errUsage)
	}
	switch args[0] {
	case "up":
		return up(ctx, args[1:])
	case "demo":
		return runDemo(ctx, args[1:], os.Stdout)
	case "files":
		return files(ctx, args[1:], os.Stdout)
	case "run":
		return runIn(args[1:])
	case "check":
		return check(args[1:], os.Stdin, os.Stdout)
	case "refresh":
		return runRefresh(ctx, args[1:], os.Stdout)
	case "bench":
		if len(args) >= 2 && args[1] == "cluster" {
			return benchCluster(ctx, args[2:], os.Stdout)
		}
		if len(args) < 2 || args[1] != "provider" {
			if wantsHelp(args[1:]) {
				fmt.Print(usage)
				return errHelp
			}
			return fmt.Errorf("%w: kvmount bench provider …", errUsage)
		}
		return benchProvider(ctx, args[2:], os.Stdout)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	case "version", "--version", "-version":
		fmt.Println(version.JSON())
		return nil
	}
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}
