package classcheck

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	ssv1 "kvmount.dev/kvmount/internal/apis/secretsync/v1alpha1"
	"kvmount.dev/kvmount/internal/azure/config"
)

// checkSecretSync checks a SecretSync as the API server and the controller
// would: the CRD's rules (the controller's own Go copy of them), fields the
// API server would drop unseen (misspelt ones, with the nearest name), and,
// when its class is among the documents, that each sourcePath is a file the
// class mounts and that the class's identity can serve a SecretSync.
func (c *checker) checkSecretSync(d Document) {
	meta, _ := d.obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	ns, _ := meta["namespace"].(string)
	if ns == "" {
		ns = "default"
	}
	add := func(line int, sev Severity, format string, args ...any) {
		c.add(d, line, sev, "SecretSync", ns, name, format, args...)
	}
	c.unknownFields(d, add)
	b, _ := json.Marshal(d.obj)
	var ss ssv1.SecretSync
	if err := json.Unmarshal(b, &ss); err != nil {
		add(d.line("spec"), Error, "not a SecretSync: %v", err)
		return
	}
	for _, e := range ssv1.Validate(&ss) {
		add(d.fieldLine(e.Field), Error, "%s", e.Error())
	}
	k, ok := c.classes[ns+"/"+ss.Spec.SecretProviderClassName]
	if !ok {
		return
	}
	files, podIdentity, ok := c.classFiles(k)
	if !ok {
		return
	}
	if podIdentity {
		add(d.line("spec", "secretProviderClassName"), Error, "SecretProviderClass %s uses usePodIdentity, which cannot serve a SecretSync (the identity would be the controller pod's): use workload identity (clientID) or identity binding", k.name)
	}
	for i, dd := range ss.Spec.SecretObject.Data {
		if dd.SourcePath != "" && !slices.Contains(files, dd.SourcePath) {
			add(d.fieldLine("spec.secretObject.data["+strconv.Itoa(i)+"].sourcePath"), Error,
				"sourcePath %q is not a file of SecretProviderClass %s (it mounts %s): name an object's objectAlias or objectName", dd.SourcePath, k.name, strings.Join(files, ", "))
		}
	}
}

// classFiles are the files a class mounts, as the provider's parser reads
// it, and whether it uses pod identity.
func (c *checker) classFiles(k *class) ([]string, bool, bool) {
	req, ok := c.request(k)
	if !ok {
		return nil, false, false
	}
	defer req.cleanup()
	cfg, err := config.Parse(req.Attributes, req.Secrets, "", config.Defaults{})
	if err != nil {
		return nil, false, false
	}
	var files []string
	for _, o := range cfg.Objects {
		files = append(files, o.Files()...)
		for _, jf := range o.JSONFields {
			files = append(files, jf.File)
		}
	}
	return files, cfg.Mode == config.ModePodIdentity, true
}

// secretSyncFields are a SecretSync's known fields, by path.
var secretSyncFields = map[string][]string{
	"":                         {"apiVersion", "kind", "metadata", "spec", "status"},
	"spec":                     {"secretProviderClassName", "serviceAccountName", "secretObject", "forceSynchronization", "secretSyncControllerName"},
	"spec.secretObject":        {"type", "data", "labels", "annotations"},
	"spec.secretObject.data[]": {"sourcePath", "targetKey"},
}

// unknownFields warns about fields the API server would drop without a
// word (the CRD prunes unknown fields): a misspelt field does nothing.
func (c *checker) unknownFields(d Document, add func(int, Severity, string, ...any)) {
	var walk func(path string, keys []string, v any, line func(...string) int)
	walk = func(path string, lineKeys []string, v any, line func(...string) int) {
		m, ok := v.(map[string]any)
		known, checked := secretSyncFields[path]
		if !ok || !checked {
			return
		}
		for k, sub := range m {
			at := append(slices.Clone(lineKeys), k)
			if !slices.Contains(known, k) {
				msg := "field " + strings.TrimPrefix(path+"."+k, ".") + " is not part of SecretSync: the API server drops it"
				if near := config.Nearest(k, known); near != "" {
					msg += "; did you mean " + near + "?"
				}
				add(line(at...), Warning, "%s", msg)
				continue
			}
			next := strings.TrimPrefix(path+"."+k, ".")
			if items, ok := sub.([]any); ok {
				for _, it := range items {
					walk(next+"[]", at, it, line)
				}
				continue
			}
			walk(next, at, sub, line)
		}
	}
	walk("", nil, d.obj, d.line)
}

// fieldLine is the line of a field error's path (spec.secretObject.data[1].sourcePath).
func (d Document) fieldLine(field string) int {
	var keys []string
	for _, part := range strings.Split(field, ".") {
		name, idx, hasIdx := strings.Cut(part, "[")
		keys = append(keys, name)
		if hasIdx {
			i, _ := strconv.Atoi(strings.TrimSuffix(idx, "]"))
			return d.seqLine(keys, i)
		}
	}
	return d.line(keys...)
}
