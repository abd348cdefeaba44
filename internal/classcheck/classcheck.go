// Package classcheck checks SecretProviderClass, pod and SecretSync
// manifests before they reach a cluster: what the Azure provider, the
// driver, the SecretSync controller and the API server would refuse or
// warn about, with the file, the line and the fix, without contacting
// anything. A class's parameters go through the provider's own parser
// (config.Parse), so the check and the provider can never disagree; what
// only the driver or the API server decides (the volume's readOnly, the
// class's namespace, parameters that are not strings) is checked here.
package classcheck

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	ssv1 "kvmount.dev/kvmount/internal/apis/secretsync/v1alpha1"
	"kvmount.dev/kvmount/internal/azure/config"
)

// Severity of a finding: errors fail the mount (or the apply), warnings are
// probably mistakes that upstream accepts.
type Severity string

const (
	Error   Severity = "error"
	Warning Severity = "warning"
	Info    Severity = "info"
)

// Finding is one problem, where it is and what to do.
type Finding struct {
	File      string   `json:"file"`
	Line      int      `json:"line"`
	Severity  Severity `json:"severity"`
	Kind      string   `json:"kind"`
	Namespace string   `json:"namespace,omitempty"`
	Name      string   `json:"name"`
	Message   string   `json:"message"`
}

func (f Finding) String() string {
	where := f.File
	if f.Line > 0 {
		where += ":" + strconv.Itoa(f.Line)
	}
	return fmt.Sprintf("%s: %s: %s %s: %s", where, f.Severity, f.Kind, qualified(f.Namespace, f.Name), f.Message)
}

func qualified(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// Check checks the documents: every SecretProviderClass, every pod (and
// pod template of a workload) that mounts secrets-store.csi.k8s.io
// volumes, and the CSIDriver if one is among them.
func Check(docs []Document) []Finding {
	c := &checker{classes: map[string]*class{}}
	for i := range docs {
		c.collect(&docs[i])
	}
	for _, d := range docs {
		c.checkPods(d)
	}
	for _, k := range c.order {
		c.checkClass(c.classes[k])
	}
	for _, d := range c.syncs {
		c.checkSecretSync(d)
	}
	sort.SliceStable(c.findings, func(i, j int) bool {
		a, b := c.findings[i], c.findings[j]
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Line < b.Line
	})
	return c.findings
}

// Failed reports whether any finding is an error.
func Failed(fs []Finding) bool {
	return slices.ContainsFunc(fs, func(f Finding) bool { return f.Severity == Error })
}

type class struct {
	doc        Document
	namespace  string
	name       string
	secretRefs []bool // per mounting pod: has a nodePublishSecretRef
}

type checker struct {
	classes  map[string]*class
	order    []string
	audience map[string]bool // the CSIDriver's tokenRequests, if one was given
	syncs    []Document      // SecretSyncs
	findings []Finding
}

func (c *checker) add(d Document, line int, sev Severity, kind, ns, name, format string, args ...any) {
	c.findings = append(c.findings, Finding{File: d.File, Line: line, Severity: sev, Kind: kind, Namespace: ns, Name: name, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) collect(d *Document) {
	kind, _ := d.obj["kind"].(string)
	meta, _ := d.obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	ns, _ := meta["namespace"].(string)
	if ns == "" {
		ns = "default"
	}
	switch {
	case kind == "SecretProviderClass" && strings.HasPrefix(apiVersion(d.obj), "secrets-store.csi.x-k8s.io/"):
		k := ns + "/" + name
		c.classes[k] = &class{doc: *d, namespace: ns, name: name}
		c.order = append(c.order, k)
	case kind == ssv1.Kind && strings.HasPrefix(apiVersion(d.obj), ssv1.Group+"/"):
		c.syncs = append(c.syncs, *d)
	case kind == "CSIDriver" && name == "secrets-store.csi.k8s.io":
		c.audience = map[string]bool{}
		spec, _ := d.obj["spec"].(map[string]any)
		reqs, _ := spec["tokenRequests"].([]any)
		for _, r := range reqs {
			if m, ok := r.(map[string]any); ok {
				aud, _ := m["audience"].(string)
				c.audience[aud] = true
			}
		}
	}
}

// checkClass parses the class's parameters with the provider's parser, as
// a mount would present them (kubelet's pod attributes and, where the
// cluster gives them, tokens and the nodePublishSecretRef Secret).
func (c *checker) checkClass(k *class) {
	d, ns, name := k.doc, k.namespace, k.name
	req, ok := c.request(k)
	if !ok {
		return
	}
	defer req.cleanup()
	cfg, err := config.Parse(req.Attributes, req.Secrets, "", config.Defaults{})
	for _, err := range config.Split(err) {
		var ce *config.Error
		if errors.As(err, &ce) {
			c.add(d, d.classLine(ce.Field, ce.Object), Error, "SecretProviderClass", ns, name, "%s", strings.TrimPrefix(ce.Error(), "SecretProviderClass "))
		} else {
			c.add(d, d.line("spec", "parameters"), Error, "SecretProviderClass", ns, name, "%v", err)
		}
	}
	for _, w := range cfg.Warnings {
		c.add(d, d.classLine("objects", w.Object), Warning, "SecretProviderClass", ns, name, "%s", strings.TrimPrefix(w.String(), "SecretProviderClass: "))
	}
	c.unknownParameters(d, ns, name)
}

// unknownParameters warns of class parameters the provider does not read
// (upstream ignores them too, so a misspelt one fails silently there).
func (c *checker) unknownParameters(d Document, ns, name string) {
	params, _ := dig(d.obj, "spec")["parameters"].(map[string]any)
	for _, k := range slices.Sorted(maps.Keys(params)) {
		if slices.Contains(config.Parameters, k) || strings.HasPrefix(k, "csi.storage.k8s.io/") {
			continue
		}
		msg := fmt.Sprintf("parameter %q is not one the Azure provider reads, and is ignored (as upstream ignores it)", k)
		if near := config.Nearest(k, config.Parameters); near != "" {
			msg += ": did you mean " + near + "?"
		}
		c.add(d, d.line("spec", "parameters", k), Warning, "SecretProviderClass", ns, name, "%s", msg)
	}
}

// podSpecPaths are where workloads keep their pod spec.
var podSpecPaths = map[string][]string{
	"Pod":         {"spec"},
	"Deployment":  {"spec", "template", "spec"},
	"StatefulSet": {"spec", "template", "spec"},
	"DaemonSet":   {"spec", "template", "spec"},
	"ReplicaSet":  {"spec", "template", "spec"},
	"Job":         {"spec", "template", "spec"},
	"CronJob":     {"spec", "jobTemplate", "spec", "template", "spec"},
}

// checkPods checks the secrets-store volumes of a pod or workload: what
// the driver refuses, and that their class exists in the pod's namespace.
func (c *checker) checkPods(d Document) {
	kind, _ := d.obj["kind"].(string)
	path, ok := podSpecPaths[kind]
	if !ok {
		return
	}
	meta, _ := d.obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	ns, _ := meta["namespace"].(string)
	if ns == "" {
		ns = "default"
	}
	spec := dig(d.obj, path...)
	vols, _ := spec["volumes"].([]any)
	for i, v := range vols {
		vol, _ := v.(map[string]any)
		csi, _ := vol["csi"].(map[string]any)
		if drv, _ := csi["driver"].(string); drv != "secrets-store.csi.k8s.io" {
			continue
		}
		vname, _ := vol["name"].(string)
		line := d.seqLine(append(path, "volumes"), i)
		if ro, _ := csi["readOnly"].(bool); !ro {
			c.add(d, line, Error, kind, ns, name, "volume %s: the driver mounts secrets-store.csi.k8s.io volumes read-only only: set csi.readOnly: true", vname)
		}
		attrs, _ := csi["volumeAttributes"].(map[string]any)
		cls, _ := attrs["secretProviderClass"].(string)
		if cls == "" {
			c.add(d, line, Error, kind, ns, name, "volume %s: volumeAttributes.secretProviderClass is not set: name the SecretProviderClass to mount", vname)
			continue
		}
		var extra []string
		for k := range attrs {
			if k != "secretProviderClass" {
				extra = append(extra, k)
			}
		}
		if len(extra) > 0 {
			sort.Strings(extra)
			c.add(d, line, Warning, kind, ns, name, "volume %s: volumeAttributes %s are ignored (the class's parameters decide; upstream would let them override the class): move them into SecretProviderClass %s", vname, strings.Join(extra, ", "), cls)
		}
		_, hasRef := csi["nodePublishSecretRef"].(map[string]any)
		c.classFor(d, line, kind, ns, name, vname, cls, hasRef)
	}
}

// classFor records that a pod mounts class cls, or says why it cannot.
func (c *checker) classFor(d Document, line int, kind, ns, name, vname, cls string, hasRef bool) {
	if k, ok := c.classes[ns+"/"+cls]; ok {
		k.secretRefs = append(k.secretRefs, hasRef)
		return
	}
	for _, k := range c.classes {
		if k.name == cls {
			c.add(d, line, Error, kind, ns, name, "volume %s: SecretProviderClass %s is in namespace %s, the pod in %s: the driver reads classes from the pod's namespace", vname, cls, k.namespace, ns)
			return
		}
	}
	c.add(d, line, Info, kind, ns, name, "volume %s: SecretProviderClass %s/%s is not among the files checked", vname, ns, cls)
}
