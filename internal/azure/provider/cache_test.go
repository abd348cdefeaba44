package provider_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"kvmount.dev/kvmount/internal/azsim"
	"kvmount.dev/kvmount/internal/azsim/arm"
	"kvmount.dev/kvmount/internal/azure/provider"
)

func spCreds(sp map[string]any) map[string]string {
	return map[string]string{"clientid": sp["appId"].(string), "clientsecret": sp["password"].(string)}
}

// TestCacheIsolation: the node cache never widens access. After an
// authorized principal's mount has filled the cache, an unauthorized
// principal still gets 403, and a wrong secret for the authorized client
// still fails authentication: a mount reaches the cache only with its own
// token for the principal the cache entry belongs to.
func TestCacheIsolation(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, "only-for-a")
	a := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{Name: "a"})
	b := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{Name: "b"})
	grant(t, s, a["appId"].(string))
	e := startProvider(t, s, cloudEnv, nil)
	p := e.baseParams("objectName: secret1\nobjectType: secret")

	first, err := e.mount(p, spCreds(a))
	if err != nil {
		t.Fatal(err)
	}
	before := s.KeyVault().Stats("kv1").Gets
	if _, err := e.republish(p, spCreds(a), first); err != nil {
		t.Fatal(err)
	}
	if got := s.KeyVault().Stats("kv1").Gets; got != before {
		t.Fatalf("a rotation of the same principal read Key Vault again (%d → %d): the cache is not in use, so this test proves nothing", before, got)
	}
	resp, err := e.republish(p, spCreds(b), first)
	wantCode(t, err, codes.PermissionDenied, "may not read secret")
	if len(resp.GetFiles()) != 0 {
		t.Fatal("files served to an unauthorized principal")
	}
	_, err = e.republish(p, map[string]string{"clientid": a["appId"].(string), "clientsecret": "guessed"}, first)
	wantCode(t, err, codes.Unauthenticated)
}

// TestRequestsPerPoll: Key Vault reads per rotation poll equal the number
// of unique (principal, object) pairs on the node, not the number of pods.
// Thirty pods of two principals mount the same five objects, then all
// rotate in one poll.
func TestRequestsPerPoll(t *testing.T) {
	s, cloudEnv := newSim(t, azsim.Config{})
	admin(t, s, "keyvault create", arm.VaultArgs{Name: "kv1", ResourceGroup: "rg"})
	var objs []string
	for i := range 5 {
		admin(t, s, "keyvault secret set", arm.SecretArgs{VaultName: "kv1", Name: fmt.Sprintf("s%d", i), Value: "v"})
		objs = append(objs, fmt.Sprintf("objectName: s%d\nobjectType: secret", i))
	}
	principals := []map[string]any{admin(t, s, "ad sp create-for-rbac", arm.SPArgs{}), admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})}
	for _, sp := range principals {
		grant(t, s, sp["appId"].(string))
	}
	clock := newClock()
	e := startProvider(t, s, cloudEnv, func(rc *provider.RunConfig) { rc.Now = clock.now })
	podParams := func(pod int) params {
		p := e.baseParams(objs...)
		p["csi.storage.k8s.io/pod.name"], p["csi.storage.k8s.io/pod.uid"] = fmt.Sprintf("pod-%d", pod), fmt.Sprintf("uid-%d", pod)
		return p
	}
	first := make([]*v1alpha1.MountResponse, 30)
	for pod := range 30 {
		resp, err := e.mount(podParams(pod), spCreds(principals[pod%2]))
		if err != nil {
			t.Fatal(err)
		}
		first[pod] = resp
	}
	clock.advance(2 * time.Minute) // the next poll: a new epoch
	s.KeyVault().ResetStats()
	var wg sync.WaitGroup
	errs := make(chan error, 30)
	for pod := range 30 {
		wg.Go(func() {
			if _, err := e.republish(podParams(pod), spCreds(principals[pod%2]), first[pod]); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := s.KeyVault().Stats("kv1").Gets; got != 2*5 {
		t.Errorf("Key Vault object reads = %d in one poll of 30 pods, want %d (2 principals × 5 objects)", got, 2*5)
	}
}

// clock is a test clock the provider's node cache reads.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestCanaryNeverLeaks mounts a canary secret, and fails a mount of it with
// a bad encoding, with debug logging on: the value appears in the file and
// nowhere else (not in the log, not in the error).
func TestCanaryNeverLeaks(t *testing.T) {
	const canary = "CANARY-kvmount-3b1f-never-log-me"
	s, cloudEnv := newSim(t, azsim.Config{})
	vaultWithSecret(t, s, canary)
	sp := admin(t, s, "ad sp create-for-rbac", arm.SPArgs{})
	grant(t, s, sp["appId"].(string))
	e := startProvider(t, s, cloudEnv, nil)
	resp, err := e.mount(e.baseParams("objectName: secret1\nobjectType: secret"), spCreds(sp))
	if err != nil || string(filesOf(resp)["secret1"].Contents) != canary {
		t.Fatalf("mount: %v", err)
	}
	_, err = e.mount(e.baseParams("objectName: secret1\nobjectType: secret\nobjectEncoding: hex"), spCreds(sp))
	wantCode(t, err, codes.InvalidArgument)
	if strings.Contains(err.Error(), canary) {
		t.Error("the canary is in the error")
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "mounted") {
		t.Fatal("no mount was logged: the test would prove nothing")
	}
	if strings.Contains(logs, canary) || strings.Contains(logs, sp["password"].(string)) {
		t.Error("a secret reached the provider's log")
	}
}
