package v1alpha1

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// The CRD's validation, in Go: the same patterns, lengths and rules as
// deploy/crds/secret-sync.x-k8s.io.yaml (TestRulesMatchCRD keeps them
// equal), so that kvmount check and the controller refuse exactly what the
// API server refuses, with the field named.
const (
	// PathPattern is sourcePath's and targetKey's: a file or key name,
	// with /N suffixes for version history files (name/0, name/1, ...).
	PathPattern = `^[A-Za-z0-9.]([-A-Za-z0-9]+([-._a-zA-Z0-9]?[A-Za-z0-9])*)?(\/([0-9]+))*$`
	// NamePattern is a DNS-1123 subdomain: the class's and the service
	// account's names.
	NamePattern = `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// ForcePattern is forceSynchronization's.
	ForcePattern = `^[A-Za-z0-9]([-A-Za-z0-9]+([-._a-zA-Z0-9]?[A-Za-z0-9])*)?$`
	// TypePattern is secretObject.type's: no whitespace.
	TypePattern = `^[^\s]+$`

	MaxNameLength       = 253
	MaxLabelKey         = 317 // the CEL rule: key size <= 317
	MaxLabelValue       = 63
	MaxAnnotationKey    = 316 // the CEL rule: key size < 317
	MaxAnnotationValue  = 262144
	DefaultType         = "Opaque"
	maxReportedProblems = 20
)

var (
	pathRE  = regexp.MustCompile(PathPattern)
	nameRE  = regexp.MustCompile(NamePattern)
	forceRE = regexp.MustCompile(ForcePattern)
	typeRE  = regexp.MustCompile(TypePattern)
)

// FieldError is one rule a SecretSync breaks, at one field.
type FieldError struct {
	Field, Msg string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Msg }

// Validate returns every rule ss breaks (at most twenty), each naming its
// field, as the API server would refuse it, and what to do.
func Validate(ss *SecretSync) []FieldError {
	var errs []FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	name := func(field, v string) {
		switch {
		case v == "":
			add(field, "is required")
		case len(v) > MaxNameLength:
			add(field, "has %d characters; at most %d", len(v), MaxNameLength)
		case !nameRE.MatchString(v):
			add(field, "%q is not a valid name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit", v)
		}
	}
	name("spec.secretProviderClassName", ss.Spec.SecretProviderClassName)
	name("spec.serviceAccountName", ss.Spec.ServiceAccountName)
	if f := ss.Spec.ForceSynchronization; f != "" && (len(f) > MaxNameLength || !forceRE.MatchString(f)) {
		add("spec.forceSynchronization", "%q must be letters, digits, '-', '.' and '_' (at most %d), starting and ending with a letter or digit", f, MaxNameLength)
	}
	so := ss.Spec.SecretObject
	if so.Type != "" && !typeRE.MatchString(so.Type) {
		add("spec.secretObject.type", "%q must not contain whitespace", so.Type)
	}
	errs = append(errs, validateData(so.Data)...)
	errs = append(errs, validateMeta("labels", so.Labels, MaxLabelKey, MaxLabelValue)...)
	errs = append(errs, validateMeta("annotations", so.Annotations, MaxAnnotationKey, MaxAnnotationValue)...)
	if len(errs) > maxReportedProblems {
		errs = errs[:maxReportedProblems]
	}
	return errs
}

func validateData(data []SecretObjectData) []FieldError {
	var errs []FieldError
	if len(data) == 0 {
		return []FieldError{{"spec.secretObject.data", "needs at least one entry: sourcePath (a file of the provider's answer) and targetKey (the Secret's key)"}}
	}
	seen := map[string]int{}
	for i, d := range data {
		for _, f := range []struct{ field, v string }{{"sourcePath", d.SourcePath}, {"targetKey", d.TargetKey}} {
			path := fmt.Sprintf("spec.secretObject.data[%d].%s", i, f.field)
			switch {
			case f.v == "":
				errs = append(errs, FieldError{path, "is required"})
			case len(f.v) > MaxNameLength:
				errs = append(errs, FieldError{path, fmt.Sprintf("has %d characters; at most %d", len(f.v), MaxNameLength)})
			case !pathRE.MatchString(f.v):
				errs = append(errs, FieldError{path, fmt.Sprintf("%q is not a file or key name: letters, digits, '-', '.' and '_', optionally followed by /N (a version history file)", f.v)})
			}
		}
		if j, dup := seen[d.TargetKey]; dup && d.TargetKey != "" {
			errs = append(errs, FieldError{fmt.Sprintf("spec.secretObject.data[%d].targetKey", i), fmt.Sprintf("%q is also data[%d]'s: each key once", d.TargetKey, j)})
		}
		seen[d.TargetKey] = i
	}
	return errs
}

func validateMeta(what string, m map[string]string, maxKey, maxValue int) []FieldError {
	var errs []FieldError
	field := "spec.secretObject." + what
	for _, k := range sortedKeys(m) {
		v := m[k]
		switch {
		case strings.HasPrefix(k, Reserved):
			errs = append(errs, FieldError{field, fmt.Sprintf("%q: keys under %s are the controller's: remove it", k, Reserved)})
		case len(k) > maxKey:
			errs = append(errs, FieldError{field, fmt.Sprintf("key %q has %d characters; at most %d", k[:20]+"…", len(k), maxKey)})
		case len(v) > maxValue:
			errs = append(errs, FieldError{field, fmt.Sprintf("value of %q has %d characters; at most %d", k, len(v), maxValue)})
		}
	}
	return errs
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
