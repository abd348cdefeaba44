package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"kvmount.dev/kvmount/internal/azure/config"
)

// NMIError is a failed answer of aad-pod-identity's NMI.
type NMIError struct {
	Status int
	// Body is NMI's plain-text explanation (never a token).
	Body string
	Pod  config.Pod
}

func (e *NMIError) Error() string {
	return fmt.Sprintf("NMI answered %d for pod %s/%s: %s", e.Status, e.Pod.Namespace, e.Pod.Name, e.Body)
}

// nmiCredential gets a pod's token from NMI's /host/token/, as upstream
// does, on every call: NMI's answer is the binding decision, and it caches
// tokens itself. One is made per mount (Source.For).
type nmiCredential struct {
	endpoint string
	pod      config.Pod
	client   *http.Client
}

// GetToken implements azcore.TokenCredential.
func (c *nmiCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if len(opts.Scopes) != 1 {
		return azcore.AccessToken{}, fmt.Errorf("pod identity: want one scope, got %d", len(opts.Scopes))
	}
	return c.fetch(ctx, strings.TrimSuffix(opts.Scopes[0], "/.default"))
}

// nmiResponse is /host/token/'s answer; numbers come as strings or numbers.
type nmiResponse struct {
	Token struct {
		AccessToken string      `json:"access_token"`
		ExpiresOn   json.Number `json:"expires_on"`
	} `json:"token"`
	ClientID string `json:"clientid"`
}

func (c *nmiCredential) fetch(ctx context.Context, resource string) (azcore.AccessToken, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.endpoint, "/")+"/host/token/?resource="+resource, nil)
	if err != nil {
		return azcore.AccessToken{}, err
	}
	req.Header.Set("podname", c.pod.Name)
	req.Header.Set("podns", c.pod.Namespace)
	resp, err := c.client.Do(req)
	if err != nil {
		return azcore.AccessToken{}, fmt.Errorf("pod identity: NMI at %s: %w", c.endpoint, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return azcore.AccessToken{}, &NMIError{Status: resp.StatusCode, Body: strings.TrimSpace(string(body)), Pod: c.pod}
	}
	return parseNMIResponse(body, time.Now())
}

// parseNMIResponse reads /host/token/'s answer. A token whose expiry is
// missing (or beyond int64) counts as already expired: it serves this
// mount only.
func parseNMIResponse(body []byte, now time.Time) (azcore.AccessToken, error) {
	var r nmiResponse
	if err := json.Unmarshal(body, &r); err != nil || r.Token.AccessToken == "" || r.ClientID == "" {
		return azcore.AccessToken{}, fmt.Errorf("pod identity: NMI did not return expected values in response: token and clientid")
	}
	exp, err := strconv.ParseInt(r.Token.ExpiresOn.String(), 10, 64)
	if err != nil {
		exp = now.Add(-time.Hour).Unix()
	}
	return azcore.AccessToken{Token: r.Token.AccessToken, ExpiresOn: time.Unix(exp, 0)}, nil
}
