package azsim

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"kvmount.dev/kvmount/internal/azsim/eventgrid"
	"kvmount.dev/kvmount/internal/azsim/store"
)

// AdminPath is where the admin API listens on the management host. The CLI
// posts {"verb": "...", "args": {...}} with the admin token as bearer.
const AdminPath = "/azsim/admin"

// AdminError is an admin verb's failure, shaped for `ERROR: (Code) message`.
type AdminError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *AdminError) Error() string { return fmt.Sprintf("(%s) %s", e.Code, e.Message) }

func notFound(format string, args ...any) error {
	return &AdminError{Status: http.StatusNotFound, Code: "ResourceNotFound", Message: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) error {
	return &AdminError{Status: http.StatusBadRequest, Code: "InvalidArgument", Message: fmt.Sprintf(format, args...)}
}

// adminVerb runs one verb with its JSON arguments.
type adminVerb func(ctx context.Context, s *Server, args json.RawMessage) (any, error)

// verbs maps the `az`-shaped command names to their implementations.
var verbs = map[string]adminVerb{}

// register adds a verb whose arguments decode into A.
func register[A any](name string, f func(ctx context.Context, s *Server, a A) (any, error)) {
	verbs[name] = func(ctx context.Context, s *Server, raw json.RawMessage) (any, error) {
		var a A
		if len(raw) > 0 {
			dec := json.NewDecoder(strings.NewReader(string(raw)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&a); err != nil {
				return nil, invalid("arguments of %q: %v", name, err)
			}
		}
		return f(ctx, s, a)
	}
}

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

func (s *Server) runVerb(ctx context.Context, verb string, raw json.RawMessage) (any, error) {
	f, ok := verbs[verb]
	if eg, isEG := s.eg.Verbs()[verb]; !ok && isEG {
		f, ok = func(ctx context.Context, _ *Server, raw json.RawMessage) (any, error) { return adminErr(eg(ctx, raw)) }, true
	}
	if !ok {
		return nil, &AdminError{Status: http.StatusNotFound, Code: "UnknownCommand", Message: fmt.Sprintf("%q is not an azsim command", verb)}
	}
	before := s.endpointCount()
	out, err := f(ctx, s, raw)
	if err == nil && s.endpointCount() != before { // the verb started IMDS or NMI endpoints
		err = s.writeEndpoints()
	}
	return out, err
}

// adminErr turns a resource provider's error into the admin API's.
func adminErr(out any, err error) (any, error) {
	var e *eventgrid.Error
	if errors.As(err, &e) {
		return nil, &AdminError{Status: e.Status, Code: e.Code, Message: e.Message}
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

// update runs fn in a store transaction.
func (s *Server) update(fn func(tx *store.Tx) error) error { return s.db.Update(fn) }

// view runs fn in a read-only store transaction.
func (s *Server) view(fn func(tx *store.Tx) error) error { return s.db.View(fn) }

func required(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if strings.TrimSpace(pairs[i+1]) == "" {
			return invalid("the following arguments are required: %s", pairs[i])
		}
	}
	return nil
}
