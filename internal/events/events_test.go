package events

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestTruncate: a long message is cut to the limit, at a rune boundary,
// and says it was cut; a short one is left alone.
func TestTruncate(t *testing.T) {
	tests := []struct {
		msg  string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"abcdefghijk", 10, "abcdefg..."},
		{"abcdef€gh", 10, "abcdef..."}, // € is 3 bytes at 6..8: cut before it
		{strings.Repeat("é", 600), 1024, strings.Repeat("é", 510) + "..."},
	}
	for _, tt := range tests {
		got := truncate(tt.msg, tt.n)
		if got != tt.want || len(got) > tt.n || !utf8.ValidString(got) {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.msg, tt.n, got, tt.want)
		}
	}
}
