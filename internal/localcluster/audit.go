package localcluster

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"strings"
)

// AuditEntry is one request of an audited user, as the API server logged
// it.
type AuditEntry struct {
	ID, Verb, Resource, Subresource, Namespace, User string
	// Code is the response's HTTP status (0 when not logged).
	Code int
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
			ResponseStatus struct {
				Code int `json:"code"`
			} `json:"responseStatus"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil || seen[ev.AuditID] {
			continue
		}
		seen[ev.AuditID] = true
		out = append(out, AuditEntry{ID: ev.AuditID, Verb: ev.Verb, Resource: ev.ObjectRef.Resource, Subresource: ev.ObjectRef.Subresource,
			Namespace: ev.ObjectRef.Namespace, User: ev.User.Username, Code: ev.ResponseStatus.Code})
	}
	return out, sc.Err()
}

// AuditCounts counts the driver's AuditEntries as "verb resource" (with
// /subresource).
func (c *Cluster) AuditCounts() (map[string]int, error) { return c.AuditCountsOf(DriverUser) }

// AuditCountsOf counts user's AuditEntries as "verb resource" (with
// /subresource).
func (c *Cluster) AuditCountsOf(user string) (map[string]int, error) {
	entries, err := c.AuditEntries()
	out := map[string]int{}
	for _, e := range entries {
		if e.User != user {
			continue
		}
		k := e.Verb + " " + e.Resource
		if e.Subresource != "" {
			k += "/" + e.Subresource
		}
		out[k]++
	}
	return out, err
}

// KubeletTokenRequests counts the kubelets' TokenRequests (the
// service-account tokens they mint for CSI drivers' tokenRequests).
func (c *Cluster) KubeletTokenRequests() (int, error) {
	entries, err := c.AuditEntries()
	n := 0
	for _, e := range entries {
		if strings.HasPrefix(e.User, "system:node:") && e.Resource == "serviceaccounts" && e.Subresource == "token" && e.Verb == "create" {
			n++
		}
	}
	return n, err
}
