package eventgrid

import (
	"fmt"
	"strings"
	"time"

	"kvmount.dev/kvmount/internal/azsim/store"
)

// Buckets of the store, one per resource type.
const (
	bucketSystemTopics  = "eventgrid-system-topics"
	bucketSubscriptions = "eventgrid-subscriptions"
	bucketNamespaces    = "eventgrid-namespaces"
	bucketNSTopics      = "eventgrid-namespace-topics"
	bucketNSSubs        = "eventgrid-namespace-subscriptions"
)

// SystemTopic publishes an Azure resource's events (here: a key vault's,
// topic type Microsoft.KeyVault.vaults).
type SystemTopic struct {
	Name          string `json:"name"`
	ResourceGroup string `json:"resourceGroup"`
	Location      string `json:"location"`
	// Source is the resource ID of the vault.
	Source    string `json:"source"`
	TopicType string `json:"topicType"`
}

// Destination types of an event subscription.
const (
	EndpointWebHook        = "WebHook"
	EndpointNamespaceTopic = "NamespaceTopic"
)

// Delivery schemas.
const (
	SchemaEventGrid   = "EventGridSchema"
	SchemaCloudEvents = "CloudEventSchemaV1_0"
)

// Provisioning states of an event subscription.
const (
	StateSucceeded    = "Succeeded"
	StateAwaitingAck  = "AwaitingManualAction"
	StateFailed       = "Failed"
	StateCreating     = "Creating"
	validationTimeout = 5 * time.Minute
)

// Subscription is an event subscription of a system topic.
type Subscription struct {
	Name          string `json:"name"`
	ResourceGroup string `json:"resourceGroup"`
	SystemTopic   string `json:"systemTopic"`
	EndpointType  string `json:"endpointType"`
	// Endpoint is the webhook's URL, or the namespace topic's resource ID.
	Endpoint string `json:"endpoint"`
	Schema   string `json:"eventDeliverySchema"`
	Filter   Filter `json:"filter"`
	// MaxDeliveryAttempts (1–30, default 30) and EventTTLMinutes (1–1440,
	// default 1440) bound a webhook delivery's retries.
	MaxDeliveryAttempts int `json:"maxDeliveryAttempts"`
	EventTTLMinutes     int `json:"eventTimeToLiveInMinutes"`
	// AADTenantID and AADAppIDOrURI make the webhook Entra-protected:
	// every delivery carries a bearer token Event Grid's app obtains for
	// that app.
	AADTenantID   string `json:"azureActiveDirectoryTenantId,omitempty"`
	AADAppIDOrURI string `json:"azureActiveDirectoryApplicationIdOrUri,omitempty"`
	State         string `json:"provisioningState"`
	// ValidationCode and ValidationDeadline are a manual validation's.
	ValidationCode     string    `json:"validationCode,omitempty"`
	ValidationDeadline time.Time `json:"validationDeadline,omitzero"`
}

// Filter is an event subscription's filter.
type Filter struct {
	IncludedEventTypes []string `json:"includedEventTypes,omitempty"`
	SubjectBeginsWith  string   `json:"subjectBeginsWith,omitempty"`
	SubjectEndsWith    string   `json:"subjectEndsWith,omitempty"`
	CaseSensitive      bool     `json:"isSubjectCaseSensitive,omitempty"`
}

// matches reports whether an event of type typ about subject passes.
func (f Filter) matches(typ, subject string) bool {
	if len(f.IncludedEventTypes) > 0 && !containsFold(f.IncludedEventTypes, typ) {
		return false
	}
	s, b, e := subject, f.SubjectBeginsWith, f.SubjectEndsWith
	if !f.CaseSensitive {
		s, b, e = strings.ToLower(s), strings.ToLower(b), strings.ToLower(e)
	}
	return strings.HasPrefix(s, b) && strings.HasSuffix(s, e)
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// Namespace is an Event Grid namespace: its topics take CloudEvents and
// hold them for pull delivery.
type Namespace struct {
	Name          string             `json:"name"`
	ResourceGroup string             `json:"resourceGroup"`
	Location      string             `json:"location"`
	Roles         []store.RoleAssign `json:"roleAssignments,omitempty"`
}

// NamespaceTopic is a topic of a namespace.
type NamespaceTopic struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// QueueSubscription is a namespace topic's event subscription with queue
// (pull) delivery.
type QueueSubscription struct {
	Namespace string `json:"namespace"`
	Topic     string `json:"topic"`
	Name      string `json:"name"`
	// LockSeconds is receiveLockDurationInSeconds (60–300, default 60);
	// MaxDeliveryCount is how often an event is handed out before it is
	// dead-lettered (1–10, default 10).
	LockSeconds        int      `json:"receiveLockDurationInSeconds"`
	MaxDeliveryCount   int      `json:"maxDeliveryCount"`
	IncludedEventTypes []string `json:"includedEventTypes,omitempty"`
}

func (b *Broker) systemTopicID(t SystemTopic) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.EventGrid/systemTopics/%s", b.cfg.SubscriptionID, t.ResourceGroup, t.Name)
}

func (b *Broker) namespaceID(n Namespace) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.EventGrid/namespaces/%s", b.cfg.SubscriptionID, n.ResourceGroup, n.Name)
}

// Hostname is a namespace's data-plane host.
func (b *Broker) Hostname(namespace string) string {
	return strings.ToLower(namespace) + "." + b.cfg.HostSuffix
}

func subscriptionKey(rg, topic, name string) string { return store.Path(rg, topic, name) }

func queueKey(ns, topic, sub string) string { return store.Path(ns, topic, sub) }
