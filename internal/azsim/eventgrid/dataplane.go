package eventgrid

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"kvmount.dev/kvmount/internal/azsim/jwt"
	"kvmount.dev/kvmount/internal/azsim/store"
)

// apiVersions the namespace data plane answers.
var apiVersions = []string{"2023-06-01-preview", "2023-10-01-preview", "2023-11-01", "2024-06-01"}

// Data roles, and the operations each allows.
var dataRoles = map[string][]string{
	"eventgrid data receiver":    {"receive", "acknowledge", "release", "reject", "renewLock"},
	"eventgrid data sender":      {"publish"},
	"eventgrid data contributor": {"publish", "receive", "acknowledge", "release", "reject", "renewLock"},
}

// RoleNames are the data roles azsim knows, for the role assignment verb.
func RoleNames() []string {
	var out []string
	for r := range dataRoles {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// serveDataPlane serves a namespace's host: publish to a topic; receive,
// acknowledge, release, reject and renew locks on a subscription.
func (b *Broker) serveDataPlane(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	nsName, ok := strings.CutSuffix(strings.ToLower(host), "."+b.cfg.HostSuffix)
	if !ok || r.Method != http.MethodPost {
		writeError(w, http.StatusNotFound, "NotFound", "no such Event Grid endpoint")
		return
	}
	if v := r.URL.Query().Get("api-version"); !slices.Contains(apiVersions, v) {
		writeError(w, http.StatusBadRequest, "BadRequest", fmt.Sprintf("The api-version %q is not supported; use one of %s.", v, strings.Join(apiVersions, ", ")))
		return
	}
	topic, sub, op, ok := parsePath(r.URL.Path)
	if !ok {
		writeError(w, http.StatusNotFound, "NotFound", "unknown path "+r.URL.Path)
		return
	}
	ns, err := b.namespace(nsName)
	if err != nil {
		writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("namespace %s not found", nsName))
		return
	}
	resource := b.namespaceID(ns) + "/topics/" + topic
	if sub != "" {
		resource += "/eventSubscriptions/" + sub
	}
	if err := b.authorizeData(r, ns, resource, op); err != nil {
		var e *Error
		errors.As(err, &e)
		writeError(w, e.Status, e.Code, e.Message)
		return
	}
	if op == "publish" {
		b.servePublish(w, r, nsName, topic)
		return
	}
	q, err := b.storedQueue(nsName, topic, sub)
	if err != nil {
		writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("event subscription %s of topic %s not found", sub, topic))
		return
	}
	if op == "receive" {
		b.serveReceive(w, r, q)
		return
	}
	b.serveSettle(w, r, q, op)
}

// parsePath reads /topics/{t}:publish and
// /topics/{t}/eventsubscriptions/{s}:{op}.
func parsePath(p string) (topic, sub, op string, ok bool) {
	rest, ok := strings.CutPrefix(p, "/topics/")
	if !ok {
		return "", "", "", false
	}
	path, op, ok := strings.Cut(rest, ":")
	if !ok {
		return "", "", "", false
	}
	parts := strings.Split(path, "/")
	switch {
	case len(parts) == 1 && op == "publish":
		return strings.ToLower(parts[0]), "", op, parts[0] != ""
	case len(parts) == 3 && strings.EqualFold(parts[1], "eventsubscriptions") && slices.Contains([]string{"receive", "acknowledge", "release", "reject", "renewLock"}, op):
		return strings.ToLower(parts[0]), strings.ToLower(parts[2]), op, parts[0] != "" && parts[2] != ""
	}
	return "", "", "", false
}

func (b *Broker) namespace(name string) (Namespace, error) {
	var ns Namespace
	err := b.cfg.DB.View(func(tx *store.Tx) error {
		var err error
		ns, err = store.Get[Namespace](tx, bucketNamespaces, store.Path(name))
		return err
	})
	return ns, err
}

func (b *Broker) storedQueue(ns, topic, sub string) (*queue, error) {
	var s QueueSubscription
	err := b.cfg.DB.View(func(tx *store.Tx) error {
		var err error
		s, err = store.Get[QueueSubscription](tx, bucketNSSubs, queueKey(ns, topic, sub))
		return err
	})
	if err != nil {
		return nil, err
	}
	return b.queueFor(s), nil
}

// authorizeData checks the bearer token (audience Event Grid's) and the
// caller's data role on resource.
func (b *Broker) authorizeData(r *http.Request, ns Namespace, resource, op string) error {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return &Error{Status: http.StatusUnauthorized, Code: "Unauthorized", Message: "The request is not authorized: a bearer token is required (a SharedAccessKey is not accepted by azsim)."}
	}
	claims, err := b.cfg.Tokens.Verify(tok)
	if err != nil {
		msg := "The token is not valid: " + err.Error()
		if errors.Is(err, jwt.ErrExpired) {
			msg = "The token is expired."
		}
		return &Error{Status: http.StatusUnauthorized, Code: "Unauthorized", Message: msg}
	}
	if !claims.Audiences.Has(Audience) && !claims.Audiences.Has(Audience+"/") {
		return &Error{Status: http.StatusUnauthorized, Code: "Unauthorized", Message: fmt.Sprintf("The token's audience %s is not %s.", strings.Join(claims.Audiences, ","), Audience)}
	}
	for _, ra := range ns.Roles {
		if strings.EqualFold(ra.PrincipalID, claims.ObjectID) && covers(ra.Scope, resource) && slices.Contains(dataRoles[strings.ToLower(ra.Role)], op) {
			return nil
		}
	}
	return &Error{Status: http.StatusForbidden, Code: "Forbidden", Message: fmt.Sprintf(
		"The principal %s has no role that allows %s on %s: assign EventGrid Data Receiver (or Sender, to publish) at that scope or above.", claims.ObjectID, op, resource)}
}

// covers reports whether a role scope covers resource, segment by segment.
func covers(scope, resource string) bool {
	scope, resource = strings.TrimSuffix(strings.ToLower(scope), "/"), strings.ToLower(resource)
	return resource == scope || strings.HasPrefix(resource, scope+"/")
}

// servePublish adds CloudEvents (one, or a batch) to every subscription of
// the topic.
func (b *Broker) servePublish(w http.ResponseWriter, r *http.Request, ns, topic string) {
	var exists bool
	_ = b.cfg.DB.View(func(tx *store.Tx) error {
		_, err := store.Get[NamespaceTopic](tx, bucketNSTopics, store.Path(ns, topic))
		exists = err == nil
		return nil
	})
	if !exists {
		writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("topic %s not found in namespace %s", topic, ns))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil || len(body) > 1<<20 {
		writeError(w, http.StatusRequestEntityTooLarge, "PayloadTooLarge", "a publish is at most 1 MB")
		return
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var ces []map[string]any
	switch mt {
	case "application/cloudevents+json":
		var one map[string]any
		err = json.Unmarshal(body, &one)
		ces = []map[string]any{one}
	case "application/cloudevents-batch+json":
		err = json.Unmarshal(body, &ces)
	default:
		writeError(w, http.StatusUnsupportedMediaType, "BadRequest", "Content-Type must be application/cloudevents+json or application/cloudevents-batch+json")
		return
	}
	if err == nil {
		err = checkCloudEvents(ces)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	b.publishToTopic(ns, topic, ces)
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, "{}")
}

// checkCloudEvents requires what CloudEvents 1.0 requires.
func checkCloudEvents(ces []map[string]any) error {
	for i, ce := range ces {
		for _, k := range []string{"id", "source", "type", "specversion"} {
			if v, _ := ce[k].(string); v == "" {
				return fmt.Errorf("event %d: %q is required", i, k)
			}
		}
		if ce["specversion"] != "1.0" {
			return fmt.Errorf("event %d: specversion must be 1.0", i)
		}
	}
	return nil
}

// serveReceive hands out locked events, waiting up to maxWaitTime.
func (b *Broker) serveReceive(w http.ResponseWriter, r *http.Request, q *queue) {
	maxEvents, err := intParam(r, "maxEvents", 1, 1, 100)
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	wait, err := intParam(r, "maxWaitTime", 60, 10, 120)
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	got := q.receive(maxEvents, time.Duration(wait)*time.Second, r.Context().Done())
	value := make([]map[string]any, 0, len(got))
	for _, e := range got {
		value = append(value, map[string]any{"brokerProperties": map[string]any{"lockToken": e.LockToken, "deliveryCount": e.DeliveryCount}, "event": e.CE})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"value": value})
}

func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s must be a number from %d to %d", name, lo, hi)
	}
	return n, nil
}

// releaseDelays are the delays release accepts, in seconds.
var releaseDelays = []string{"0", "10", "60", "600", "3600"}

// serveSettle acknowledges, releases, rejects or renews the locks of the
// lock tokens in the body.
func (b *Broker) serveSettle(w http.ResponseWriter, r *http.Request, q *queue, op string) {
	var req struct {
		LockTokens []string `json:"lockTokens"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || len(req.LockTokens) == 0 || len(req.LockTokens) > 100 {
		writeError(w, http.StatusBadRequest, "BadRequest", `the body must be {"lockTokens": [...]} with 1 to 100 tokens`)
		return
	}
	var delay time.Duration
	if op == "release" {
		d := r.URL.Query().Get("releaseDelayInSeconds")
		if d == "" {
			d = "0"
		}
		if !slices.Contains(releaseDelays, d) {
			writeError(w, http.StatusBadRequest, "BadRequest", "releaseDelayInSeconds must be one of "+strings.Join(releaseDelays, ", "))
			return
		}
		n, _ := strconv.Atoi(d)
		delay = b.scaled(time.Duration(n) * time.Second)
	}
	ok, failed := q.settle(op, req.LockTokens, delay)
	out := map[string]any{"succeededLockTokens": orEmpty(ok), "failedLockTokens": []any{}}
	var f []any
	for _, tok := range failed {
		f = append(f, map[string]any{"lockToken": tok, "error": map[string]string{"code": "TokenLost", "message": "The lock token is unknown or its lock has expired."}})
	}
	if f != nil {
		out["failedLockTokens"] = f
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
