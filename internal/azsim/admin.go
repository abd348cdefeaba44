package azsim

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"kvmount.dev/kvmount/internal/azsim/arm"
)

// AdminPath is where the admin API listens on the management host. The CLI
// posts {"verb": "...", "args": {...}} with the admin token as bearer.
const AdminPath = "/azsim/admin"

// AdminError is an admin verb's failure, shaped for `ERROR: (Code) message`.
type AdminError = arm.AdminError

// Admin runs verb in-process with args (any JSON-encodable value) and
// returns its result as generic JSON, exactly what the admin API returns.
func (s *Server) Admin(ctx context.Context, verb string, args any) (map[string]any, error) {
	raw, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	out, err := s.runVerb(ctx, verb, raw)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	return m, json.Unmarshal(b, &m)
}

// runVerb runs a resource provider's verb (package arm, Event Grid's
// broker) or the server's own.
func (s *Server) runVerb(ctx context.Context, verb string, raw json.RawMessage) (any, error) {
	before := s.endpointCount()
	var out any
	var err error
	eg, isEG := s.eg.Verbs()[verb]
	switch {
	case verb == "token stats":
		out = s.TokenStats()
	case !arm.Has(verb) && isEG:
		out, err = arm.FromEventGrid(eg(ctx, raw))
	default:
		out, err = s.arm.Run(ctx, verb, raw)
	}
	if err == nil && s.endpointCount() != before { // the verb started IMDS or NMI endpoints
		err = s.writeEndpoints()
	}
	return out, err
}

// serveAdmin is the admin API over HTTPS for the CLI.
func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if subtle.ConstantTimeCompare([]byte(tok), []byte(s.adminTk)) != 1 {
		writeAdmin(w, http.StatusUnauthorized, map[string]any{"error": AdminError{Code: "Unauthorized", Message: "missing or wrong admin token (it is in the data dir's admin-token file)"}})
		return
	}
	if r.URL.Path != AdminPath || r.Method != http.MethodPost {
		writeAdmin(w, http.StatusNotFound, map[string]any{"error": AdminError{Code: "NotFound", Message: "POST " + AdminPath}})
		return
	}
	var req struct {
		Verb string          `json:"verb"`
		Args json.RawMessage `json:"args"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 2<<20)).Decode(&req); err != nil {
		writeAdmin(w, http.StatusBadRequest, map[string]any{"error": AdminError{Code: "BadRequest", Message: "body must be {\"verb\":…,\"args\":…}"}})
		return
	}
	out, err := s.runVerb(r.Context(), req.Verb, req.Args)
	if err != nil {
		var ae *AdminError
		if !errors.As(err, &ae) {
			ae = &AdminError{Status: http.StatusBadRequest, Code: "BadRequest", Message: err.Error()}
		}
		writeAdmin(w, ae.Status, map[string]any{"error": ae})
		return
	}
	writeAdmin(w, http.StatusOK, map[string]any{"result": out})
}

func writeAdmin(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	if status == 0 {
		status = http.StatusBadRequest
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) endpointCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.endpoints)
}
