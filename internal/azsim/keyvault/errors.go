package keyvault

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// apiError is a Key Vault error response: the HTTP status and the envelope
// {"error":{"code","message","innererror":{"code"}}} the SDK turns into an
// *azcore.ResponseError. Messages follow the real service's wording.
type apiError struct {
	status int
	code   string
	inner  string
	msg    string
	// header is set on responses that need one (401 challenge, 429).
	header map[string]string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.msg) }

func errBadParameter(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "BadParameter", msg: fmt.Sprintf(format, args...)}
}

func errNotFound(kind, name, version string) *apiError {
	id := name
	if version != "" {
		id += "/" + version
	}
	code := map[string]string{kindSecrets: "SecretNotFound", kindKeys: "KeyNotFound", kindCerts: "CertificateNotFound"}[kind]
	noun := map[string]string{kindSecrets: "secret", kindKeys: "key", kindCerts: "certificate"}[kind]
	return &apiError{status: http.StatusNotFound, code: code, msg: fmt.Sprintf(
		"A %s with (name/id) %s was not found in this key vault. If you recently deleted this %s you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
		noun, id, noun)}
}

func errDisabled(kind string) *apiError {
	noun := map[string]string{kindSecrets: "secret", kindKeys: "key", kindCerts: "certificate"}[kind]
	code := map[string]string{kindSecrets: "SecretDisabled", kindKeys: "KeyDisabled", kindCerts: "CertificateDisabled"}[kind]
	return &apiError{status: http.StatusForbidden, code: "Forbidden", inner: code,
		msg: fmt.Sprintf("Operation get is not allowed on a disabled %s.", noun)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes err as a Key Vault error; anything that is not an
// *apiError is an internal failure, reported without detail.
func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{status: http.StatusInternalServerError, code: "InternalServerError", msg: "azsim: internal error"}
	}
	for k, v := range ae.header {
		w.Header().Set(k, v)
	}
	body := map[string]any{"code": ae.code, "message": ae.msg}
	if ae.inner != "" {
		body["innererror"] = map[string]string{"code": ae.inner}
	}
	writeJSON(w, ae.status, map[string]any{"error": body})
}
