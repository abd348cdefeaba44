// Package store keeps azsim's state — tenants, identities, app registrations,
// virtual machines, key vaults and their objects — in one bbolt file, so that
// the local cloud survives a restart the way the real one does. Values are
// JSON documents in one bucket per kind, keyed by lower-cased names (Azure
// names are case-insensitive).
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrNotFound is returned by Get when no document has the key.
var ErrNotFound = errors.New("not found")

// DB is an open store.
type DB struct {
	bolt *bolt.DB
}

// Open opens (or creates) the store file at path.
func Open(path string) (*DB, error) {
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w (is another azsim using this data dir?)", path, err)
	}
	return &DB{bolt: b}, nil
}

// Close closes the store file.
func (db *DB) Close() error { return db.bolt.Close() }

// Tx is one read or read-write transaction.
type Tx struct{ tx *bolt.Tx }

// Update runs fn in a read-write transaction, committed when fn returns nil.
func (db *DB) Update(fn func(*Tx) error) error {
	return db.bolt.Update(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// View runs fn in a read-only transaction.
func (db *DB) View(fn func(*Tx) error) error {
	return db.bolt.View(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// Path joins parts into a store key, lower-cased.
func Path(parts ...string) string { return strings.ToLower(strings.Join(parts, "/")) }

// Get reads the document at key in bucket into a T.
func Get[T any](tx *Tx, bucket, key string) (T, error) {
	var v T
	b := tx.tx.Bucket([]byte(bucket))
	if b == nil {
		return v, ErrNotFound
	}
	data := b.Get([]byte(key))
	if data == nil {
		return v, ErrNotFound
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("decode %s/%s: %w", bucket, key, err)
	}
	return v, nil
}

// Put writes v as the document at key in bucket.
func Put[T any](tx *Tx, bucket, key string, v T) error {
	b, err := tx.tx.CreateBucketIfNotExists([]byte(bucket))
	if err != nil {
		return fmt.Errorf("bucket %s: %w", bucket, err)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", bucket, key, err)
	}
	return b.Put([]byte(key), data)
}

// Delete removes the document at key in bucket, which must exist.
func Delete(tx *Tx, bucket, key string) error {
	b := tx.tx.Bucket([]byte(bucket))
	if b == nil || b.Get([]byte(key)) == nil {
		return ErrNotFound
	}
	return b.Delete([]byte(key))
}

// List returns every document in bucket whose key starts with prefix, in
// key order.
func List[T any](tx *Tx, bucket, prefix string) ([]T, error) {
	b := tx.tx.Bucket([]byte(bucket))
	if b == nil {
		return nil, nil
	}
	var out []T
	c := b.Cursor()
	p := []byte(prefix)
	for k, data := c.Seek(p); k != nil && strings.HasPrefix(string(k), prefix); k, data = c.Next() {
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("decode %s/%s: %w", bucket, k, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// Sequence returns the next value of bucket's counter, which orders object
// versions by creation even when two share a timestamp.
func Sequence(tx *Tx, bucket string) (uint64, error) {
	b, err := tx.tx.CreateBucketIfNotExists([]byte(bucket))
	if err != nil {
		return 0, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	return b.NextSequence()
}
