package localcluster

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
)

// AuditEntry is one request of an audited user, as the API server logged
// it.
type AuditEntry struct {
	ID, Verb, Resource, Subresource, Namespace, User string
}

// AuditEntries reads the API server's audit log: every request of
// AuditedUsers since the cluster started, once each (a watch logs two
// stages, counted once).
func (c *Cluster) AuditEntries() ([]AuditEntry, error) {
	f, err := os.Open(c.AuditLog())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []AuditEntry
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev struct {
			AuditID string `json:"auditID"`
			Verb    string `json:"verb"`
			User    struct {
				Username string `json:"username"`
			} `json:"user"`
			ObjectRef struct {
				Resource, Subresource, Namespace string
			} `json:"objectRef"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil || seen[ev.AuditID] {
			continue
		}
		seen[ev.AuditID] = true
		out = append(out, AuditEntry{ID: ev.AuditID, Verb: ev.Verb, Resource: ev.ObjectRef.Resource, Subresource: ev.ObjectRef.Subresource,
			Namespace: ev.ObjectRef.Namespace, User: ev.User.Username})
	}
	return out, sc.Err()
}

// AuditCounts counts AuditEntries as "verb resource" (with /subresource).
func (c *Cluster) AuditCounts() (map[string]int, error) {
	entries, err := c.AuditEntries()
	out := map[string]int{}
	for _, e := range entries {
		k := e.Verb + " " + e.Resource
		if e.Subresource != "" {
			k += "/" + e.Subresource
		}
		out[k]++
	}
	return out, err
}
