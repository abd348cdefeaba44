package keyvault

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"kvmount.dev/kvmount/internal/azsim/store"
)

// op is one routed request: what it touches, the permission it needs and
// the function that performs it.
type op struct {
	kind, perm    string
	name, version string
	// read operations count against the vault's GET throttle.
	read bool
	run  func(h *Handler, r *http.Request, v store.Vault, o op) (int, any, error)
}

var (
	nameRE    = regexp.MustCompile(`^[0-9a-zA-Z-]{1,127}$`)
	versionRE = regexp.MustCompile(`^[0-9a-fA-F]{32}$`)
)

// route maps method and path to an operation, validating names and
// versions on the way.
func route(method, path string) (op, error) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	kind := parts[0]
	if err := unsupported(method, parts); err != nil {
		return op{}, err
	}
	if kind != kindSecrets && kind != kindKeys && kind != kindCerts {
		return op{}, errNoRoute(method, path)
	}
	if len(parts) == 1 {
		if method == http.MethodGet {
			return op{kind: kind, perm: "list", read: true, run: listObjects}, nil
		}
		return op{}, errNoRoute(method, path)
	}
	o := op{kind: kind, name: parts[1]}
	if !nameRE.MatchString(o.name) {
		return op{}, errBadParameter("The request URI contains an invalid name: %s", o.name)
	}
	rest := parts[2:]
	if len(rest) > 1 {
		return op{}, errNoRoute(method, path)
	}
	sub := ""
	if len(rest) == 1 {
		sub = rest[0]
	}
	return routeObject(method, path, o, sub)
}

func routeObject(method, path string, o op, sub string) (op, error) {
	key := method + " " + o.kind + " " + sub
	switch {
	case method == http.MethodGet && sub == "versions":
		o.perm, o.read, o.run = "list", true, listVersions
	case method == http.MethodGet && (sub == "pending" || sub == "policy") && o.kind == kindCerts:
		o.perm, o.read, o.run = "get", true, getCertificateExtra(sub)
	case method == http.MethodGet:
		o.perm, o.read, o.run, o.version = "get", true, getObject, sub
	case key == "PUT secrets ":
		o.perm, o.run = "set", setSecret
	case key == "PUT keys ":
		o.perm, o.run = "import", importKey
	case key == "POST keys create":
		o.perm, o.run = "create", createKey
	case key == "POST certificates import":
		o.perm, o.run = "import", importCertificate
	case key == "POST certificates create":
		o.perm, o.run = "create", createCertificate
	case method == http.MethodPatch:
		// Secrets have no "update" permission: changing attributes takes "set".
		o.perm, o.run, o.version = "update", updateObject, sub
		if o.kind == kindSecrets {
			o.perm = "set"
		}
	default:
		return op{}, errNoRoute(method, path)
	}
	if o.version != "" && !versionRE.MatchString(o.version) {
		return op{}, errBadParameter("The request URI contains an invalid version: %s", o.version)
	}
	return o, nil
}

// unsupported names the parts of the Key Vault API azsim does not model,
// so that a client gets "not supported" rather than a misleading
// CertificateNotFound or "invalid version".
func unsupported(method string, parts []string) error {
	what := ""
	switch {
	case len(parts) >= 2 && parts[0] == kindCerts && (parts[1] == "contacts" || parts[1] == "issuers"):
		what = "certificate " + parts[1]
	case len(parts) == 3 && parts[0] == kindCerts && parts[2] == "pending" && method != http.MethodGet:
		what = "cancelling or deleting certificate operations (creation is immediate in azsim)"
	case len(parts) == 3 && parts[0] == kindCerts && parts[2] == "policy" && method != http.MethodGet:
		what = "updating certificate policies"
	case len(parts) == 3 && parts[0] == kindKeys && parts[2] == "rotationpolicy":
		what = "key rotation policies"
	case len(parts) == 3 && parts[0] == kindKeys && parts[2] == "rotate":
		what = "key rotation"
	case len(parts) >= 1 && (parts[0] == "deletedsecrets" || parts[0] == "deletedkeys" || parts[0] == "deletedcertificates"):
		what = "soft-deleted objects"
	}
	if what == "" {
		return nil
	}
	return &apiError{status: http.StatusNotImplemented, code: "NotSupported", msg: "azsim does not support " + what + "; kvmount's provider never uses them"}
}

func errNoRoute(method, path string) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "BadParameter",
		msg: "azsim: the operation " + method + " " + path + " is not supported"}
}

func itoa(n int) string { return strconv.Itoa(n) }
