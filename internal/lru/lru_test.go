package lru

import (
	"errors"
	"testing"
	"time"
)

func TestCache(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	tests := []struct {
		name string
		run  func(c *Cache[string, int]) (got []string)
		want []string
	}{
		{"size bound drops the least recently used", func(c *Cache[string, int]) []string {
			add(c, "a", "b", "c")
			c.Get("a") // a is now the most recent
			add(c, "d")
			return keys(c, "a", "b", "c", "d")
		}, []string{"a", "c", "d"}},
		{"idle entries leave", func(c *Cache[string, int]) []string {
			add(c, "a")
			now = now.Add(30 * time.Second)
			add(c, "b")
			now = now.Add(45 * time.Second) // a idle 75 s, b 45 s
			return keys(c, "a", "b")
		}, []string{"b"}},
		{"use keeps an entry", func(c *Cache[string, int]) []string {
			add(c, "a")
			now = now.Add(50 * time.Second)
			c.Get("a")
			now = now.Add(50 * time.Second)
			return keys(c, "a")
		}, []string{"a"}},
		{"a failed create stores nothing", func(c *Cache[string, int]) []string {
			_, err := c.GetOrAdd("x", func() (int, error) { return 0, errors.New("no") })
			if err == nil {
				return []string{"error lost"}
			}
			return keys(c, "x")
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New[string, int](3, time.Minute, clock)
			got := tt.run(c)
			if len(got) != len(tt.want) {
				t.Fatalf("kept %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("kept %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// TestCacheBounded: ten thousand distinct keys never hold more than max.
func TestCacheBounded(t *testing.T) {
	c := New[int, []byte](100, time.Hour, nil)
	for i := range 10000 {
		if _, err := c.GetOrAdd(i, func() ([]byte, error) { return make([]byte, 64), nil }); err != nil {
			t.Fatal(err)
		}
		if c.Len() > 100 {
			t.Fatalf("%d entries after %d keys", c.Len(), i+1)
		}
	}
}

func add(c *Cache[string, int], ks ...string) {
	for _, k := range ks {
		_, _ = c.GetOrAdd(k, func() (int, error) { return len(k), nil })
	}
}

// keys lists which of ks are present (without marking them used).
func keys(c *Cache[string, int], ks ...string) []string {
	var out []string
	c.mu.Lock()
	c.expire()
	for _, k := range ks {
		if _, ok := c.items[k]; ok {
			out = append(out, k)
		}
	}
	c.mu.Unlock()
	return out
}
