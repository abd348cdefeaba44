package syncer

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"kvmount.dev/kvmount/internal/lru"
)

// tokens mints the service-account tokens a provider is given for a
// SecretSync, as kubelet does for a pod's CSI volume: one TokenRequest per
// audience (the admission policy allows exactly one, and exactly the
// configured lifetime), each reused until 80% of its life has passed, as
// kubelet's token manager does. The cache is bounded: service accounts
// seen once leave.
type tokens struct {
	core      corev1client.CoreV1Interface
	audiences []string
	lifetime  time.Duration
	now       func() time.Time

	mu    sync.Mutex // guards cache
	cache *lru.Cache[string, authenticationv1.TokenRequestStatus]
}

func newTokens(core corev1client.CoreV1Interface, audiences []string, lifetime time.Duration, now func() time.Time) *tokens {
	return &tokens{core: core, audiences: audiences, lifetime: lifetime, now: now,
		cache: lru.New[string, authenticationv1.TokenRequestStatus](4096, time.Hour, now)}
}

// attribute returns the serviceAccount.tokens attribute for namespace/sa:
// JSON of audience → {token, expirationTimestamp}, as kubelet writes it.
func (t *tokens) attribute(ctx context.Context, namespace, sa string) (string, error) {
	out := make(map[string]authenticationv1.TokenRequestStatus, len(t.audiences))
	for _, aud := range t.audiences {
		tok, err := t.token(ctx, namespace, sa, aud)
		if err != nil {
			return "", err
		}
		out[aud] = tok
	}
	b, err := json.Marshal(out)
	return string(b), err
}

func (t *tokens) token(ctx context.Context, namespace, sa, aud string) (authenticationv1.TokenRequestStatus, error) {
	key := namespace + "/" + sa + "|" + aud
	if tok, ok := t.cache.Get(key); ok && t.now().Before(tok.ExpirationTimestamp.Add(-t.lifetime/5)) {
		return tok, nil
	}
	secs := int64(t.lifetime / time.Second)
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{aud}, ExpirationSeconds: &secs}}
	out, err := t.core.ServiceAccounts(namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return authenticationv1.TokenRequestStatus{}, &tokenError{namespace: namespace, sa: sa, audience: aud, err: err}
	}
	t.cache.Put(key, out.Status)
	return out.Status, nil
}

// tokenError is a TokenRequest that failed.
type tokenError struct {
	namespace, sa, audience string
	err                     error
}

func (e *tokenError) Error() string {
	return fmt.Sprintf("token of service account %s/%s for audience %s: %v", e.namespace, e.sa, e.audience, e.err)
}

func (e *tokenError) Unwrap() error { return e.err }

// len is the number of tokens cached.
func (t *tokens) len() int { return t.cache.Len() }
