package localcluster

import (
	"slices"
	"strings"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{
			name: "plain and escaped",
			in: "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n" +
				"98 22 0:50 / /var/lib/kubelet/pods/a\\040b/volumes rw - tmpfs tmpfs rw,size=4k\n",
			want: []string{"/", "/var/lib/kubelet/pods/a b/volumes"},
		},
		{name: "short line skipped", in: "1 2 3\n", want: nil},
		{name: "empty", in: "", want: nil},
		{name: "no trailing newline", in: "1 2 0:3 / /x rw - tmpfs t rw", want: []string{"/x"}},
		{name: "bad escape kept", in: "1 2 0:3 / /x\\9zz rw - tmpfs t rw", want: []string{"/x\\9zz"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMountinfo(strings.NewReader(tt.in))
			if err != nil {
				t.Fatalf("parseMountinfo: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzUnescapeOctal checks that decoding never panics, never grows the
// input, and is the identity on strings without a backslash.
func FuzzUnescapeOctal(f *testing.F) {
	for _, s := range []string{"/a\\040b", "\\", "\\0", "\\04", "\\777", "plain", "/x\\134y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := unescapeOctal(s)
		if len(got) > len(s) {
			t.Fatalf("unescapeOctal(%q) = %q grew", s, got)
		}
		if !strings.Contains(s, `\`) && got != s {
			t.Fatalf("unescapeOctal(%q) = %q changed a string without escapes", s, got)
		}
	})
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add("22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n")
	f.Add("1 2 3 4 /a\\040b\n\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		points, err := parseMountinfo(strings.NewReader(in))
		if err != nil {
			return // only over-long lines fail, and they must fail cleanly
		}
		if n := strings.Count(in, "\n") + 1; len(points) > n {
			t.Fatalf("%d mount points from %d lines", len(points), n)
		}
	})
}
