package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	spcv1 "kvmount.dev/kvmount/internal/apis/secretsstore/v1"
	ssv1 "kvmount.dev/kvmount/internal/apis/secretsync/v1alpha1"
	"kvmount.dev/kvmount/internal/refresh"
)

// refreshKinds are the kinds `kvmount refresh` accepts, by every name
// kubectl would.
var refreshKinds = map[string]schema.GroupVersionResource{
	"secretproviderclass": spcv1.SecretProviderClassResource, "secretproviderclasses": spcv1.SecretProviderClassResource, "spc": spcv1.SecretProviderClassResource,
	"secretsync": ssv1.Resource, "secretsyncs": ssv1.Resource, "ss": ssv1.Resource,
}

const refreshUsage = "kvmount refresh secretproviderclass/<name>|secretsync/<name> [-n NAMESPACE] [--kubeconfig FILE] [--context NAME]"

// runRefresh is `kvmount refresh <kind>/<name>`: it asks for every object
// of a class (all its mounts on every node, and its SecretSyncs) or of one
// SecretSync to be read from Key Vault now, by setting the refresh
// annotation to the current time. It is a patch of the object, so RBAC
// decides who may: whoever may patch the class or the SecretSync.
func runRefresh(ctx context.Context, args []string, out io.Writer) error {
	var ns, kubeconfig, kubeContext string
	fs := flag.NewFlagSet("kvmount refresh", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&ns, "n", "", "namespace (default: the kubeconfig context's)")
	fs.StringVar(&ns, "namespace", "", "namespace (default: the kubeconfig context's)")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&kubeContext, "context", "", "kubeconfig context")
	pos, err := parseVerb(fs, args, out, refreshUsage)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: %s", errUsage, refreshUsage)
	}
	kind, name, ok := strings.Cut(pos[0], "/")
	gvr, known := refreshKinds[strings.ToLower(kind)]
	if !ok || !known || name == "" {
		return fmt.Errorf("%w: %q: name a secretproviderclass/<name> or a secretsync/<name>", errUsage, pos[0])
	}
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig, Precedence: clientcmd.NewDefaultClientConfigLoadingRules().Precedence},
		&clientcmd.ConfigOverrides{CurrentContext: kubeContext})
	if ns == "" {
		if ns, _, err = loader.Namespace(); err != nil {
			return err
		}
	}
	rc, err := loader.ClientConfig()
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	return requestRefresh(ctx, dyn, gvr, ns, name, time.Now(), out)
}

// requestRefresh sets the refresh annotation of ns/name to now.
func requestRefresh(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, ns, name string, now time.Time, out io.Writer) error {
	stamp, err := refresh.Ask(ctx, dyn, gvr, ns, name, now)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: refresh requested (%s=%s)\n", gvr.Resource+" "+ns+"/"+name, refresh.RequestAnnotation, stamp)
	return nil
}
