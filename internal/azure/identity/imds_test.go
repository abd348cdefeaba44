package identity

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestIMDSSlotHeldUntilBodyClosed: IMDS counts a request until its answer
// is complete, so a slot is held while the body is still being sent: with
// five answers whose headers arrived but whose bodies did not, a sixth
// request waits until one of them is closed.
func TestIMDSSlotHeldUntilBodyClosed(t *testing.T) {
	finish := make(chan struct{})
	var inflight, arrived atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inflight.Add(1)
		arrived.Add(1)
		defer inflight.Add(-1)
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush() // the headers now, the body later
		<-finish
	}))
	defer srv.Close()
	defer close(finish)
	c := newIMDSClient(srv.URL, nil)
	resps := make(chan *http.Response, 6)
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			resp, err := c.Get(DefaultIMDS + "/metadata/identity/oauth2/token")
			if err != nil {
				t.Error(err)
				return
			}
			resps <- resp
		})
	}
	first := <-resps
	deadline := time.Now().Add(10 * time.Second)
	for arrived.Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a sixth request would have arrived by now
	if n := inflight.Load(); n != 5 {
		t.Fatalf("%d requests at IMDS while five answers are unread, want 5", n)
	}
	first.Body.Close()
	for arrived.Load() < 6 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := arrived.Load(); n != 6 {
		t.Fatalf("the sixth request did not go once a body was closed (%d arrived)", n)
	}
	for range 5 {
		(<-resps).Body.Close()
	}
	wg.Wait()
}
