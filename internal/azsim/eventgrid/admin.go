package eventgrid

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"kvmount.dev/kvmount/internal/azsim/store"
)

// Verb is one az-shaped management command with its JSON arguments.
type Verb func(ctx context.Context, args json.RawMessage) (any, error)

// verb decodes a command's arguments strictly into A.
func verb[A any](name string, f func(A) (any, error)) Verb {
	return func(_ context.Context, raw json.RawMessage) (any, error) {
		var a A
		if len(raw) > 0 {
			dec := json.NewDecoder(strings.NewReader(string(raw)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&a); err != nil {
				return nil, invalid("arguments of %q: %v", name, err)
			}
		}
		return f(a)
	}
}

// Verbs are the broker's commands, named as az names them (plus
// `eventgrid stats`, azsim's own).
func (b *Broker) Verbs() map[string]Verb {
	return map[string]Verb{
		"eventgrid system-topic create":                       verb("eventgrid system-topic create", b.systemTopicCreate),
		"eventgrid system-topic show":                         verb("eventgrid system-topic show", b.systemTopicShow),
		"eventgrid system-topic delete":                       verb("eventgrid system-topic delete", b.systemTopicDelete),
		"eventgrid system-topic event-subscription create":    verb("eventgrid system-topic event-subscription create", b.subscriptionCreate),
		"eventgrid system-topic event-subscription show":      verb("eventgrid system-topic event-subscription show", b.subscriptionShow),
		"eventgrid system-topic event-subscription list":      verb("eventgrid system-topic event-subscription list", b.subscriptionList),
		"eventgrid system-topic event-subscription delete":    verb("eventgrid system-topic event-subscription delete", b.subscriptionDelete),
		"eventgrid namespace create":                          verb("eventgrid namespace create", b.namespaceCreate),
		"eventgrid namespace show":                            verb("eventgrid namespace show", b.namespaceShow),
		"eventgrid namespace topic create":                    verb("eventgrid namespace topic create", b.topicCreate),
		"eventgrid namespace topic event-subscription create": verb("eventgrid namespace topic event-subscription create", b.queueSubscriptionCreate),
		"eventgrid stats":                                     verb("eventgrid stats", func(struct{}) (any, error) { return b.AllStats(), nil }),
	}
}

func invalid(format string, args ...any) error {
	return &Error{Status: http.StatusBadRequest, Code: "InvalidArgument", Message: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &Error{Status: http.StatusNotFound, Code: "ResourceNotFound", Message: fmt.Sprintf(format, args...)}
}

func required(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if strings.TrimSpace(pairs[i+1]) == "" {
			return invalid("the following arguments are required: %s", pairs[i])
		}
	}
	return nil
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9-]{3,64}$`)

// SystemTopicArgs is `az eventgrid system-topic create|show|delete`.
type SystemTopicArgs struct {
	ResourceGroup string `json:"resourceGroup"`
	Name          string `json:"name"`
	Location      string `json:"location,omitempty"`
	TopicType     string `json:"topicType,omitempty"`
	Source        string `json:"source,omitempty"`
}

// keyVaultTopicType is the only system topic type azsim has.
const keyVaultTopicType = "Microsoft.KeyVault.vaults"

func (b *Broker) systemTopicCreate(a SystemTopicArgs) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--name/-n", a.Name, "--topic-type", a.TopicType, "--source", a.Source); err != nil {
		return nil, err
	}
	if !nameRE.MatchString(a.Name) {
		return nil, invalid("The system topic name '%s' is invalid: use 3-64 letters, digits and hyphens.", a.Name)
	}
	if !strings.EqualFold(a.TopicType, keyVaultTopicType) {
		return nil, invalid("--topic-type %q: azsim has system topics for %s only.", a.TopicType, keyVaultTopicType)
	}
	if b.cfg.SourceExists != nil && !b.cfg.SourceExists(a.Source) {
		return nil, notFound("The source resource '%s' was not found: create the key vault first (its id is in `keyvault show`).", a.Source)
	}
	t := SystemTopic{Name: a.Name, ResourceGroup: a.ResourceGroup, Location: orString(a.Location, "westus2"), Source: a.Source, TopicType: keyVaultTopicType}
	err := b.cfg.DB.Update(func(tx *store.Tx) error {
		for _, other := range mustList[SystemTopic](tx, bucketSystemTopics, "") {
			if strings.EqualFold(other.Source, t.Source) && !strings.EqualFold(other.Name, t.Name) {
				return &Error{Status: http.StatusBadRequest, Code: "InvalidRequest", Message: fmt.Sprintf("Only one system topic is allowed per source. The source %s already has system topic %s.", t.Source, other.Name)}
			}
		}
		return store.Put(tx, bucketSystemTopics, store.Path(t.ResourceGroup, t.Name), t)
	})
	if err != nil {
		return nil, err
	}
	return b.systemTopicJSON(t), nil
}

func mustList[T any](tx *store.Tx, bucket, prefix string) []T {
	out, _ := store.List[T](tx, bucket, prefix)
	return out
}

func orString(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func (b *Broker) systemTopicJSON(t SystemTopic) map[string]any {
	return map[string]any{"id": b.systemTopicID(t), "name": t.Name, "type": "Microsoft.EventGrid/systemTopics", "location": t.Location,
		"resourceGroup": t.ResourceGroup, "source": t.Source, "topicType": t.TopicType, "provisioningState": "Succeeded",
		"metricResourceId": store.NewGUID()}
}

func (b *Broker) systemTopic(rg, name string) (SystemTopic, error) {
	var t SystemTopic
	err := b.cfg.DB.View(func(tx *store.Tx) error {
		var err error
		t, err = store.Get[SystemTopic](tx, bucketSystemTopics, store.Path(rg, name))
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return t, notFound("The system topic '%s' was not found in resource group '%s'.", name, rg)
	}
	return t, err
}

func (b *Broker) systemTopicShow(a SystemTopicArgs) (any, error) {
	t, err := b.systemTopic(a.ResourceGroup, a.Name)
	if err != nil {
		return nil, err
	}
	return b.systemTopicJSON(t), nil
}

func (b *Broker) systemTopicDelete(a SystemTopicArgs) (any, error) {
	t, err := b.systemTopic(a.ResourceGroup, a.Name)
	if err != nil {
		return nil, err
	}
	var keys []string
	err = b.cfg.DB.Update(func(tx *store.Tx) error {
		for _, s := range mustList[Subscription](tx, bucketSubscriptions, store.Path(t.ResourceGroup, t.Name)+"/") {
			k := subscriptionKey(s.ResourceGroup, s.SystemTopic, s.Name)
			keys = append(keys, k)
			if err := store.Delete(tx, bucketSubscriptions, k); err != nil {
				return err
			}
		}
		return store.Delete(tx, bucketSystemTopics, store.Path(t.ResourceGroup, t.Name))
	})
	for _, k := range keys {
		b.dropWebhook(k)
	}
	return nil, err
}

// SubscriptionArgs is `az eventgrid system-topic event-subscription …`.
type SubscriptionArgs struct {
	ResourceGroup        string   `json:"resourceGroup"`
	SystemTopicName      string   `json:"systemTopicName"`
	Name                 string   `json:"name"`
	Endpoint             string   `json:"endpoint,omitempty"`
	EndpointType         string   `json:"endpointType,omitempty"`
	IncludedEventTypes   []string `json:"includedEventTypes,omitempty"`
	SubjectBeginsWith    string   `json:"subjectBeginsWith,omitempty"`
	SubjectEndsWith      string   `json:"subjectEndsWith,omitempty"`
	SubjectCaseSensitive bool     `json:"subjectCaseSensitive,omitempty"`
	EventDeliverySchema  string   `json:"eventDeliverySchema,omitempty"`
	MaxDeliveryAttempts  int      `json:"maxDeliveryAttempts,omitempty"`
	EventTTL             int      `json:"eventTtl,omitempty"`
	AADTenantID          string   `json:"azureActiveDirectoryTenantId,omitempty"`
	AADAppIDOrURI        string   `json:"azureActiveDirectoryApplicationIdOrUri,omitempty"`
}

// keyVaultEventTypes are the event types of Microsoft.KeyVault.vaults.
var keyVaultEventTypes = []string{
	"Microsoft.KeyVault.CertificateNewVersionCreated", "Microsoft.KeyVault.CertificateNearExpiry", "Microsoft.KeyVault.CertificateExpired",
	"Microsoft.KeyVault.KeyNewVersionCreated", "Microsoft.KeyVault.KeyNearExpiry", "Microsoft.KeyVault.KeyExpired",
	"Microsoft.KeyVault.SecretNewVersionCreated", "Microsoft.KeyVault.SecretNearExpiry", "Microsoft.KeyVault.SecretExpired",
	"Microsoft.KeyVault.VaultAccessPolicyChanged",
}

func (b *Broker) subscriptionCreate(a SubscriptionArgs) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--system-topic-name", a.SystemTopicName, "--name/-n", a.Name, "--endpoint", a.Endpoint); err != nil {
		return nil, err
	}
	t, err := b.systemTopic(a.ResourceGroup, a.SystemTopicName)
	if err != nil {
		return nil, err
	}
	s, err := b.subscriptionFromArgs(a)
	if err != nil {
		return nil, err
	}
	switch s.EndpointType {
	case EndpointWebHook:
		if err := b.handshake(&s, b.systemTopicID(t)); err != nil {
			return nil, err
		}
	case EndpointNamespaceTopic:
		s.State = StateSucceeded
	}
	err = b.cfg.DB.Update(func(tx *store.Tx) error {
		return store.Put(tx, bucketSubscriptions, subscriptionKey(s.ResourceGroup, s.SystemTopic, s.Name), s)
	})
	if err != nil {
		return nil, err
	}
	return b.subscriptionJSON(t, s), nil
}

// subscriptionFromArgs checks a subscription's arguments as Event Grid
// does: an HTTPS webhook, or an existing namespace topic with CloudEvents;
// known event types; attempts 1–30 and a time to live of 1–1440 minutes.
func (b *Broker) subscriptionFromArgs(a SubscriptionArgs) (Subscription, error) {
	s := Subscription{Name: a.Name, ResourceGroup: a.ResourceGroup, SystemTopic: a.SystemTopicName, Endpoint: a.Endpoint,
		Filter:              Filter{IncludedEventTypes: a.IncludedEventTypes, SubjectBeginsWith: a.SubjectBeginsWith, SubjectEndsWith: a.SubjectEndsWith, CaseSensitive: a.SubjectCaseSensitive},
		MaxDeliveryAttempts: orDefault(a.MaxDeliveryAttempts, 30), EventTTLMinutes: orDefault(a.EventTTL, 1440),
		AADTenantID: a.AADTenantID, AADAppIDOrURI: a.AADAppIDOrURI, State: StateCreating}
	if !nameRE.MatchString(a.Name) {
		return s, invalid("The event subscription name '%s' is invalid: use 3-64 letters, digits and hyphens.", a.Name)
	}
	switch strings.ToLower(orString(a.EndpointType, "webhook")) {
	case "webhook":
		s.EndpointType = EndpointWebHook
		if u, err := url.Parse(a.Endpoint); err != nil || u.Scheme != "https" || u.Host == "" {
			return s, invalid("--endpoint %q: a webhook must be an absolute https URL (Event Grid does not deliver over http).", a.Endpoint)
		}
	case "namespacetopic":
		s.EndpointType = EndpointNamespaceTopic
		ns, topic, ok := parseTopicID(a.Endpoint)
		var err error
		if ok {
			err = b.cfg.DB.View(func(tx *store.Tx) error {
				_, err := store.Get[NamespaceTopic](tx, bucketNSTopics, store.Path(ns, topic))
				return err
			})
		}
		if !ok || err != nil {
			return s, invalid("--endpoint %q: a namespace topic destination is the resource ID of an existing namespace topic (…/namespaces/<ns>/topics/<topic>).", a.Endpoint)
		}
	default:
		return s, invalid("--endpoint-type %q: azsim delivers to webhook and namespacetopic.", a.EndpointType)
	}
	switch strings.ToLower(orString(a.EventDeliverySchema, "eventgridschema")) {
	case "eventgridschema":
		s.Schema = SchemaEventGrid
	case "cloudeventschemav1_0":
		s.Schema = SchemaCloudEvents
	default:
		return s, invalid("--event-delivery-schema %q: use eventgridschema or cloudeventschemav1_0.", a.EventDeliverySchema)
	}
	if s.EndpointType == EndpointNamespaceTopic && s.Schema != SchemaCloudEvents {
		return s, invalid("A namespace topic destination takes CloudEvents: add --event-delivery-schema cloudeventschemav1_0.")
	}
	for _, typ := range a.IncludedEventTypes {
		if !containsFold(keyVaultEventTypes, typ) {
			return s, invalid("--included-event-types: %q is not an event type of %s (%s).", typ, keyVaultTopicType, strings.Join(keyVaultEventTypes, ", "))
		}
	}
	if s.MaxDeliveryAttempts > 30 || s.EventTTLMinutes > 1440 {
		return s, invalid("--max-delivery-attempts is 1-30 and --event-ttl 1-1440 minutes.")
	}
	if (a.AADTenantID == "") != (a.AADAppIDOrURI == "") {
		return s, invalid("an Entra-protected webhook needs both --azure-active-directory-tenant-id and --azure-active-directory-application-id-or-uri.")
	}
	return s, nil
}

func (b *Broker) subscriptionJSON(t SystemTopic, s Subscription) map[string]any {
	dest := map[string]any{"endpointType": s.EndpointType}
	if s.EndpointType == EndpointWebHook {
		u, _ := url.Parse(s.Endpoint)
		base := *u
		base.RawQuery = ""
		props := map[string]any{"endpointBaseUrl": base.String(), "maxEventsPerBatch": 1, "preferredBatchSizeInKilobytes": 64}
		if s.AADAppIDOrURI != "" {
			props["azureActiveDirectoryTenantId"], props["azureActiveDirectoryApplicationIdOrUri"] = s.AADTenantID, s.AADAppIDOrURI
		}
		dest["properties"] = props
	} else {
		dest["properties"] = map[string]any{"resourceId": s.Endpoint}
	}
	return map[string]any{"id": b.systemTopicID(t) + "/eventSubscriptions/" + s.Name, "name": s.Name, "type": "Microsoft.EventGrid/systemTopics/eventSubscriptions",
		"resourceGroup": s.ResourceGroup, "destination": dest, "filter": s.Filter, "eventDeliverySchema": s.Schema,
		"retryPolicy":       map[string]any{"maxDeliveryAttempts": s.MaxDeliveryAttempts, "eventTimeToLiveInMinutes": s.EventTTLMinutes},
		"provisioningState": s.State, "topic": b.systemTopicID(t)}
}

func (b *Broker) subscription(a SubscriptionArgs) (SystemTopic, Subscription, error) {
	t, err := b.systemTopic(a.ResourceGroup, a.SystemTopicName)
	if err != nil {
		return t, Subscription{}, err
	}
	var s Subscription
	err = b.cfg.DB.View(func(tx *store.Tx) error {
		var err error
		s, err = store.Get[Subscription](tx, bucketSubscriptions, subscriptionKey(a.ResourceGroup, a.SystemTopicName, a.Name))
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return t, s, notFound("The event subscription '%s' of system topic '%s' was not found.", a.Name, a.SystemTopicName)
	}
	return t, s, err
}

func (b *Broker) subscriptionShow(a SubscriptionArgs) (any, error) {
	t, s, err := b.subscription(a)
	if err != nil {
		return nil, err
	}
	return b.subscriptionJSON(t, s), nil
}

func (b *Broker) subscriptionList(a SubscriptionArgs) (any, error) {
	t, err := b.systemTopic(a.ResourceGroup, a.SystemTopicName)
	if err != nil {
		return nil, err
	}
	var subs []Subscription
	_ = b.cfg.DB.View(func(tx *store.Tx) error {
		subs = mustList[Subscription](tx, bucketSubscriptions, store.Path(t.ResourceGroup, t.Name)+"/")
		return nil
	})
	out := []any{}
	for _, s := range subs {
		out = append(out, b.subscriptionJSON(t, s))
	}
	return out, nil
}

func (b *Broker) subscriptionDelete(a SubscriptionArgs) (any, error) {
	if _, _, err := b.subscription(a); err != nil {
		return nil, err
	}
	key := subscriptionKey(a.ResourceGroup, a.SystemTopicName, a.Name)
	err := b.cfg.DB.Update(func(tx *store.Tx) error { return store.Delete(tx, bucketSubscriptions, key) })
	b.dropWebhook(key)
	return nil, err
}

// NamespaceArgs is `az eventgrid namespace …` and its topics'.
type NamespaceArgs struct {
	ResourceGroup       string   `json:"resourceGroup"`
	Name                string   `json:"name"`
	Location            string   `json:"location,omitempty"`
	NamespaceName       string   `json:"namespaceName,omitempty"`
	TopicName           string   `json:"topicName,omitempty"`
	ReceiveLockDuration int      `json:"receiveLockDuration,omitempty"`
	MaxDeliveryCount    int      `json:"maxDeliveryCount,omitempty"`
	IncludedEventTypes  []string `json:"includedEventTypes,omitempty"`
}

func (b *Broker) namespaceCreate(a NamespaceArgs) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	if !regexp.MustCompile(`^[a-zA-Z0-9-]{3,50}$`).MatchString(a.Name) {
		return nil, invalid("The namespace name '%s' is invalid: use 3-50 letters, digits and hyphens.", a.Name)
	}
	ns := Namespace{Name: strings.ToLower(a.Name), ResourceGroup: a.ResourceGroup, Location: orString(a.Location, "westus2")}
	err := b.cfg.DB.Update(func(tx *store.Tx) error {
		if _, err := store.Get[Namespace](tx, bucketNamespaces, store.Path(ns.Name)); err == nil {
			return &Error{Status: http.StatusConflict, Code: "Conflict", Message: fmt.Sprintf("The namespace name '%s' is already in use.", a.Name)}
		}
		return store.Put(tx, bucketNamespaces, store.Path(ns.Name), ns)
	})
	if err != nil {
		return nil, err
	}
	return b.namespaceJSON(ns), nil
}

func (b *Broker) namespaceJSON(ns Namespace) map[string]any {
	return map[string]any{"id": b.namespaceID(ns), "name": ns.Name, "type": "Microsoft.EventGrid/namespaces", "location": ns.Location,
		"resourceGroup": ns.ResourceGroup, "provisioningState": "Succeeded",
		"topicsConfiguration": map[string]any{"hostname": b.Hostname(ns.Name)}}
}

func (b *Broker) namespaceShow(a NamespaceArgs) (any, error) {
	ns, err := b.namespace(a.Name)
	if err != nil {
		return nil, notFound("The namespace '%s' was not found.", a.Name)
	}
	return b.namespaceJSON(ns), nil
}

func (b *Broker) topicCreate(a NamespaceArgs) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--namespace-name", a.NamespaceName, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	ns, err := b.namespace(a.NamespaceName)
	if err != nil {
		return nil, notFound("The namespace '%s' was not found.", a.NamespaceName)
	}
	t := NamespaceTopic{Namespace: ns.Name, Name: strings.ToLower(a.Name)}
	if err := b.cfg.DB.Update(func(tx *store.Tx) error { return store.Put(tx, bucketNSTopics, store.Path(t.Namespace, t.Name), t) }); err != nil {
		return nil, err
	}
	return map[string]any{"id": b.namespaceID(ns) + "/topics/" + t.Name, "name": t.Name, "type": "Microsoft.EventGrid/namespaces/topics",
		"eventRetentionInDays": 1, "inputSchema": "CloudEventSchemaV1_0", "publisherType": "Custom", "provisioningState": "Succeeded"}, nil
}

func (b *Broker) queueSubscriptionCreate(a NamespaceArgs) (any, error) {
	if err := required("--resource-group/-g", a.ResourceGroup, "--namespace-name", a.NamespaceName, "--topic-name", a.TopicName, "--name/-n", a.Name); err != nil {
		return nil, err
	}
	ns, err := b.namespace(a.NamespaceName)
	if err != nil {
		return nil, notFound("The namespace '%s' was not found.", a.NamespaceName)
	}
	s := QueueSubscription{Namespace: ns.Name, Topic: strings.ToLower(a.TopicName), Name: strings.ToLower(a.Name),
		LockSeconds: orDefault(a.ReceiveLockDuration, 60), MaxDeliveryCount: orDefault(a.MaxDeliveryCount, 10), IncludedEventTypes: a.IncludedEventTypes}
	if s.LockSeconds < 60 || s.LockSeconds > 300 || s.MaxDeliveryCount > 10 {
		return nil, invalid("--receive-lock-duration is 60-300 seconds and --max-delivery-count 1-10.")
	}
	err = b.cfg.DB.Update(func(tx *store.Tx) error {
		if _, err := store.Get[NamespaceTopic](tx, bucketNSTopics, store.Path(s.Namespace, s.Topic)); err != nil {
			return notFound("The topic '%s' of namespace '%s' was not found.", a.TopicName, a.NamespaceName)
		}
		return store.Put(tx, bucketNSSubs, queueKey(s.Namespace, s.Topic, s.Name), s)
	})
	if err != nil {
		return nil, err
	}
	b.queueFor(s)
	return map[string]any{"id": b.namespaceID(ns) + "/topics/" + s.Topic + "/eventSubscriptions/" + s.Name, "name": s.Name,
		"deliveryConfiguration": map[string]any{"deliveryMode": "Queue", "queue": map[string]any{"receiveLockDurationInSeconds": s.LockSeconds, "maxDeliveryCount": s.MaxDeliveryCount, "eventTimeToLive": "P1D"}},
		"eventDeliverySchema":   "CloudEventSchemaV1_0", "filtersConfiguration": map[string]any{"includedEventTypes": s.IncludedEventTypes}, "provisioningState": "Succeeded"}, nil
}

// NamespaceScope reports whether scope is an Event Grid namespace or lies
// below one.
func NamespaceScope(scope string) bool { return namespaceScopeRE.MatchString(scope) }

// AssignRole records a data role on an Event Grid namespace (or one of its
// topics or subscriptions).
func (b *Broker) AssignRole(scope, principalID, role string) (ra store.RoleAssign, err error) {
	m := namespaceScopeRE.FindStringSubmatch(scope)
	if m == nil {
		return ra, invalid("--scope %q is not an Event Grid namespace or below one", scope)
	}
	if _, ok := dataRoles[strings.ToLower(role)]; !ok {
		return ra, notFound("Role '%s' doesn't exist for Event Grid; azsim knows: %s.", role, strings.Join(RoleNames(), ", "))
	}
	err = b.cfg.DB.Update(func(tx *store.Tx) error {
		ns, err := store.Get[Namespace](tx, bucketNamespaces, store.Path(m[1]))
		if err != nil {
			return notFound("The namespace '%s' was not found.", m[1])
		}
		ra = store.RoleAssign{ID: store.NewGUID(), PrincipalID: principalID, Role: role, Scope: scope}
		ns.Roles = append(ns.Roles, ra)
		return store.Put(tx, bucketNamespaces, store.Path(ns.Name), ns)
	})
	return ra, err
}

var namespaceScopeRE = regexp.MustCompile(`(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.EventGrid/namespaces/([^/]+)(/.*)?$`)
