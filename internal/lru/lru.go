// Package lru is a small size- and idle-bounded cache for the provider's
// long-lived objects (credentials, SDK clients): they are worth keeping
// while mounts use them and worth nothing once the pod, service account or
// identity that needed them is gone, so an entry leaves when the cache is
// full and it is the least recently used, or when nobody used it for the
// idle timeout. Without a bound, every pod or service account ever seen
// would stay in memory for the life of the process.
package lru

import (
	"container/list"
	"sync"
	"time"
)

// Cache maps keys to values, at most Max of them, each dropped after Idle
// without use. It is safe for concurrent use.
type Cache[K comparable, V any] struct {
	max  int
	idle time.Duration
	now  func() time.Time

	mu    sync.Mutex // guards order and items
	order *list.List // front: most recently used
	items map[K]*list.Element
}

type entry[K comparable, V any] struct {
	key  K
	val  V
	used time.Time
}

// New returns a cache of at most max entries (at least 1), each dropped
// after idle without use (zero: never). now may be nil (time.Now).
func New[K comparable, V any](max int, idle time.Duration, now func() time.Time) *Cache[K, V] {
	if max < 1 {
		max = 1
	}
	if now == nil {
		now = time.Now
	}
	return &Cache[K, V]{max: max, idle: idle, now: now, order: list.New(), items: map[K]*list.Element{}}
}

// Get returns the value of key and marks it used.
func (c *Cache[K, V]) Get(key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire()
	el, ok := c.items[key]
	if !ok {
		var zero V
		return zero, false
	}
	e := el.Value.(*entry[K, V])
	e.used = c.now()
	c.order.MoveToFront(el)
	return e.val, true
}

// GetOrAdd returns the value of key, creating it with mk when absent. mk
// runs under the cache's lock, so it must be quick and must not use the
// cache; an error from mk is returned and nothing is stored.
func (c *Cache[K, V]) GetOrAdd(key K, mk func() (V, error)) (V, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire()
	if el, ok := c.items[key]; ok {
		e := el.Value.(*entry[K, V])
		e.used = c.now()
		c.order.MoveToFront(el)
		return e.val, nil
	}
	v, err := mk()
	if err != nil {
		return v, err
	}
	c.items[key] = c.order.PushFront(&entry[K, V]{key: key, val: v, used: c.now()})
	for c.order.Len() > c.max {
		c.remove(c.order.Back())
	}
	return v, nil
}

// Put stores val under key, replacing what was there.
func (c *Cache[K, V]) Put(key K, val V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.remove(el)
	}
	c.items[key] = c.order.PushFront(&entry[K, V]{key: key, val: val, used: c.now()})
	for c.order.Len() > c.max {
		c.remove(c.order.Back())
	}
}

// Delete removes key.
func (c *Cache[K, V]) Delete(key K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.remove(el)
	}
}

// Len is the number of entries held.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire()
	return c.order.Len()
}

// expire drops entries idle longer than c.idle; c.mu is held. Entries are
// in order of use, so it stops at the first fresh one.
func (c *Cache[K, V]) expire() {
	if c.idle <= 0 {
		return
	}
	now := c.now()
	for el := c.order.Back(); el != nil; el = c.order.Back() {
		if now.Sub(el.Value.(*entry[K, V]).used) <= c.idle {
			return
		}
		c.remove(el)
	}
}

func (c *Cache[K, V]) remove(el *list.Element) {
	c.order.Remove(el)
	delete(c.items, el.Value.(*entry[K, V]).key)
}
