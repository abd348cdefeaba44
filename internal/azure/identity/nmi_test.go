package identity

import (
	"testing"
	"time"
)

// TestParseNMIResponse: NMI's expiry comes as a string or a number; an
// answer without a token or client ID, or with an expiry that is not a
// number, is refused; a missing expiry makes a token good for this mount
// only.
func TestParseNMIResponse(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	tests := []struct {
		body    string
		wantExp int64
		wantErr bool
	}{
		{`{"token":{"access_token":"t","expires_on":"1003600"},"clientid":"c"}`, 1_003_600, false},
		{`{"token":{"access_token":"t","expires_on":1003600},"clientid":"c"}`, 1_003_600, false},
		{`{"token":{"access_token":"t","expires_on":"soon"},"clientid":"c"}`, 0, true},
		{`{"token":{"access_token":"t"},"clientid":"c"}`, 996_400, false},
		{`{"token":{"access_token":""},"clientid":"c"}`, 0, true},
		{`{"token":{"access_token":"t"}}`, 0, true},
		{`<html>`, 0, true},
	}
	for _, tt := range tests {
		tok, err := parseNMIResponse([]byte(tt.body), now)
		if (err != nil) != tt.wantErr || (err == nil && tok.ExpiresOn.Unix() != tt.wantExp) {
			t.Errorf("%s: %v, expires %d, want error %v, expiry %d", tt.body, err, tok.ExpiresOn.Unix(), tt.wantErr, tt.wantExp)
		}
	}
}

// FuzzNMIResponse: any body NMI sends is read without a panic, and an
// accepted one has a token.
func FuzzNMIResponse(f *testing.F) {
	f.Add([]byte(`{"token":{"access_token":"t","expires_on":"1003600"},"clientid":"c"}`))
	f.Add([]byte(`{"token":{"access_token":"t","expires_on":1e400},"clientid":"c"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := parseNMIResponse(body, time.Unix(1_000_000, 0))
		if err == nil && tok.Token == "" {
			t.Fatalf("%q accepted without a token", body)
		}
	})
}
