package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/eventgrid/aznamespaces"

	"kvmount.dev/kvmount/internal/azure/entraauth"
	"kvmount.dev/kvmount/internal/changefeed"
	"kvmount.dev/kvmount/internal/httpclient"
	"kvmount.dev/kvmount/internal/serve"
)

// addEventFlags are kvmount's flags for Key Vault's events
// (docs/rotation-events.md): a webhook Event Grid delivers to, and a
// namespace topic subscription the controller pulls from, either or both.
func addEventFlags(fs *flag.FlagSet, e *eventsConfig) {
	fs.StringVar(&e.webhookAddr, "events-webhook-bind-address", "", "kvmount: serve Event Grid's webhook deliveries (HTTPS, path /events) on this address, e.g. :8443 (empty: no webhook)")
	fs.StringVar(&e.tlsCert, "events-webhook-tls-cert-file", "", "kvmount: the webhook's serving certificate (Event Grid needs one a public CA issued); reloaded when it changes")
	fs.StringVar(&e.tlsKey, "events-webhook-tls-key-file", "", "kvmount: the webhook certificate's key")
	fs.StringVar(&e.audiences, "events-webhook-audience", "", "kvmount: Entra-protected webhook: comma-separated audiences accepted (the webhook app's ID URI and app ID); deliveries must carry Event Grid's token for it, issued by --events-tenant-id")
	fs.StringVar(&e.keyFile, "events-webhook-key-file", "", "kvmount: a file holding the shared key the webhook's URL carries (?key=…), instead of or besides Entra")
	fs.StringVar(&e.endpoint, "events-namespace-endpoint", "", "kvmount: pull Key Vault's events from this Event Grid namespace (https://<namespace>.<region>-1.eventgrid.azure.net)")
	fs.StringVar(&e.topic, "events-namespace-topic", "", "kvmount: the namespace topic the vaults' system topics deliver to")
	fs.StringVar(&e.subscription, "events-namespace-subscription", "", "kvmount: the topic's event subscription (queue delivery) to receive from")
	fs.StringVar(&e.tenant, "events-tenant-id", os.Getenv("AZURE_TENANT_ID"), "kvmount: the Entra tenant of the webhook's app and of the controller's identity (default $AZURE_TENANT_ID)")
	fs.StringVar(&e.clientID, "events-client-id", os.Getenv("AZURE_CLIENT_ID"), "kvmount: the controller's workload identity for pulling (default $AZURE_CLIENT_ID); it needs EventGrid Data Receiver on the subscription")
	fs.StringVar(&e.tokenFile, "events-token-file", orEnv("AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/azure/tokens/azure-identity-token"), "kvmount: the service-account token the identity is federated with (default $AZURE_FEDERATED_TOKEN_FILE)")
	fs.StringVar(&e.authority, "authority-host", orEnv("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/"), "kvmount: Entra ID's host (default $AZURE_AUTHORITY_HOST)")
	fs.Var(&e.caFiles, "ca-file", "kvmount: extra CA (PEM) trusted for Entra ID and Event Grid (repeatable)")
	fs.Var(&e.overrides, "host-override", "kvmount: SUFFIX=HOST:PORT dials every host under SUFFIX at that address (repeatable; for private endpoints and azsim)")
}

func orEnv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// check refuses half a configuration, and a webhook without
// authentication: an open endpoint would let anyone make every node read
// Key Vault.
func (e eventsConfig) check() error {
	if e.webhookAddr != "" {
		switch {
		case e.tlsCert == "" || e.tlsKey == "":
			return errors.New("--events-webhook-bind-address needs --events-webhook-tls-cert-file and --events-webhook-tls-key-file: Event Grid delivers over HTTPS only")
		case e.audiences == "" && e.keyFile == "":
			return errors.New("--events-webhook-bind-address needs authentication: --events-webhook-audience (Entra-protected delivery, with --events-tenant-id) or --events-webhook-key-file")
		case e.audiences != "" && e.tenant == "":
			return errors.New("--events-webhook-audience needs --events-tenant-id: the tenant whose tokens are accepted")
		}
	}
	if e.endpoint != "" && (e.topic == "" || e.subscription == "" || e.clientID == "" || e.tenant == "") {
		return errors.New("--events-namespace-endpoint needs --events-namespace-topic, --events-namespace-subscription, --events-client-id and --events-tenant-id")
	}
	return nil
}

func (e eventsConfig) enabled() bool { return e.webhookAddr != "" || e.endpoint != "" }

// httpClient reaches Entra ID and Event Grid.
func (e eventsConfig) httpClient() (*http.Client, error) {
	opts := httpclient.Options{CAFiles: e.caFiles, Overrides: map[string]string{}}
	for _, o := range e.overrides {
		suffix, addr, err := httpclient.ParseOverride(o)
		if err != nil {
			return nil, fmt.Errorf("--host-override: %w", err)
		}
		opts.Overrides[suffix] = addr
	}
	t, err := httpclient.NewTransport(opts)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: t, Timeout: 150 * time.Second}, nil
}

// eventSources returns the webhook server and the puller the flags ask
// for, each a function run until ctx ends.
func eventSources(e eventsConfig, feed *changefeed.Feed, log *slog.Logger) ([]func(context.Context) error, error) {
	client, err := e.httpClient()
	if err != nil {
		return nil, err
	}
	var out []func(context.Context) error
	if e.webhookAddr != "" {
		h, err := e.webhook(feed, client)
		if err != nil {
			return nil, err
		}
		out = append(out, func(ctx context.Context) error { return serve.HTTP(ctx, h) })
		log.Info("receiving Key Vault events by webhook", "address", e.webhookAddr, "entra", e.audiences != "", "key", e.keyFile != "")
	}
	if e.endpoint != "" {
		p, err := e.puller(feed, client)
		if err != nil {
			return nil, err
		}
		out = append(out, func(ctx context.Context) error { p.Run(ctx); return nil })
		log.Info("pulling Key Vault events", "endpoint", e.endpoint, "topic", e.topic, "subscription", e.subscription)
	}
	return out, nil
}

func (e eventsConfig) webhook(feed *changefeed.Feed, client *http.Client) (*http.Server, error) {
	wh := &changefeed.Webhook{Feed: feed}
	if e.audiences != "" {
		wh.Bearer = &entraauth.Verifier{Authority: e.authority, TenantID: e.tenant, Audiences: split(e.audiences), HTTPClient: client}
	}
	if e.keyFile != "" {
		b, err := os.ReadFile(e.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--events-webhook-key-file: %w", err)
		}
		if wh.Key = strings.TrimSpace(string(b)); len(wh.Key) < 16 {
			return nil, fmt.Errorf("--events-webhook-key-file: the key is %d characters; use at least 16 random ones", len(wh.Key))
		}
	}
	tlsCfg, err := serve.CertFiles(e.tlsCert, e.tlsKey)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/events", wh)
	return &http.Server{Addr: e.webhookAddr, Handler: mux, TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}, nil
}

func (e eventsConfig) puller(feed *changefeed.Feed, client *http.Client) (*changefeed.Puller, error) {
	var opts azcore.ClientOptions
	opts.Transport = client
	opts.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: e.authority}
	cred, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{ClientOptions: opts,
		ClientID: e.clientID, TenantID: e.tenant, TokenFilePath: e.tokenFile, DisableInstanceDiscovery: true})
	if err != nil {
		return nil, fmt.Errorf("the controller's workload identity: %w", err)
	}
	rc, err := aznamespaces.NewReceiverClient(strings.TrimRight(e.endpoint, "/"), e.topic, e.subscription, cred, &aznamespaces.ReceiverClientOptions{ClientOptions: opts})
	if err != nil {
		return nil, err
	}
	return &changefeed.Puller{Feed: feed, Receiver: rc}, nil
}

func split(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
