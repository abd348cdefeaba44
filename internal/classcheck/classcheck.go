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
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

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
	return fmt.Sprintf("%s:%d: %s: %s %s: %s", f.File, f.Line, f.Severity, f.Kind, qualified(f.Namespace, f.Name), f.Message)
}

func qualified(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// Document is one YAML document of a manifest file.
type Document struct {
	File string
	node *yaml.Node
	obj  map[string]any
}

// Read reads every YAML document of the files, and of the .yaml and .yml
// files under the directories, in path order; "-" is standard input.
func Read(paths []string, stdin io.Reader) ([]Document, error) {
	var docs []Document
	for _, p := range paths {
		files, err := expand(p)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			var data []byte
			if f == "-" {
				data, err = io.ReadAll(stdin)
			} else {
				data, err = os.ReadFile(f)
			}
			if err != nil {
				return nil, err
			}
			d, err := parse(f, data)
			if err != nil {
				return nil, err
			}
			docs = append(docs, d...)
		}
	}
	return docs, nil
}

func expand(p string) ([]string, error) {
	if p == "-" {
		return []string{p}, nil
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return []string{p}, nil
	}
	var files []string
	err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return err
	})
	sort.Strings(files)
	return files, err
}

// parse splits a file into documents.
func parse(file string, data []byte) ([]Document, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []Document
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		var obj map[string]any
		if err := n.Decode(&obj); err != nil || obj == nil {
			continue
		}
		docs = append(docs, Document{File: file, node: &n, obj: obj})
	}
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

func apiVersion(obj map[string]any) string {
	v, _ := obj["apiVersion"].(string)
	return v
}

// line is the line of the value at path (mapping keys) in the document, or
// of the deepest key found.
func (d Document) line(path ...string) int {
	n := d.node
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, key := range path {
		if n.Kind != yaml.MappingNode {
			return line
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				line, n, found = n.Content[i].Line, n.Content[i+1], true
				break
			}
		}
		if !found {
			return line
		}
	}
	return line
}

// fakeToken is a JWT-shaped service-account token, for parsing classes
// that need one: the real one comes from kubelet at mount time.
func fakeToken() string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString([]byte(`{"sub":"system:serviceaccount:check:check"}`)) + ".c2ln"
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
}

// Request is a class as a mount presents it to the provider: the
// attributes and secrets JSON of a Mount call.
type Request struct {
	Namespace, Name     string
	Attributes, Secrets string
	stub                string
}

// Cleanup removes what the request made (a stand-in cloud file).
func (r Request) Cleanup() { r.cleanup() }

func (r Request) cleanup() {
	if r.stub != "" {
		os.Remove(r.stub)
	}
}

// Requests are the Mount requests the documents' classes would make, for
// comparing the check with the provider itself; Cleanup each.
func Requests(docs []Document) []Request {
	c := &checker{classes: map[string]*class{}}
	for i := range docs {
		c.collect(&docs[i])
	}
	for _, d := range docs {
		c.checkPods(d)
	}
	var out []Request
	for _, k := range c.order {
		if r, ok := c.request(c.classes[k]); ok {
			out = append(out, r)
		}
	}
	return out
}

// request builds the class's Mount request, or reports why there is none
// (another provider, parameters the API server would refuse).
func (c *checker) request(k *class) (Request, bool) {
	d, ns, name := k.doc, k.namespace, k.name
	spec, _ := d.obj["spec"].(map[string]any)
	if p, _ := spec["provider"].(string); p != "azure" {
		c.add(d, d.line("spec", "provider"), Error, "SecretProviderClass", ns, name, "provider %q: kvmount's provider serves provider: azure (another provider must be installed for %q)", p, p)
		return Request{}, false
	}
	raw, _ := spec["parameters"].(map[string]any)
	attrs := map[string]string{}
	for key, v := range raw {
		s, ok := v.(string)
		if !ok {
			c.add(d, d.line("spec", "parameters", key), Error, "SecretProviderClass", ns, name,
				"parameters.%s is a %T, and the API server accepts strings only: quote it (%s: \"%v\")", key, v, key, v)
			return Request{}, false
		}
		attrs[key] = s
	}
	req := Request{Namespace: ns, Name: name}
	if f := attrs["cloudEnvFileName"]; f != "" {
		c.add(d, d.line("spec", "parameters", "cloudEnvFileName"), Info, "SecretProviderClass", ns, name,
			"cloudEnvFileName %s is read in the provider's pod: not checked here", f)
		req.stub = stubCloudFile()
		attrs["cloudEnvFileName"] = req.stub
	}
	for key, v := range map[string]string{"csi.storage.k8s.io/pod.name": "check", "csi.storage.k8s.io/pod.namespace": ns,
		"csi.storage.k8s.io/pod.uid": "check", "csi.storage.k8s.io/serviceAccount.name": "check"} {
		attrs[key] = v
	}
	tokens := map[string]map[string]string{}
	for _, aud := range []string{config.WorkloadIdentityAudience, config.IdentityBindingAudience} {
		if c.audience == nil || c.audience[aud] {
			tokens[aud] = map[string]string{"token": fakeToken()}
		}
	}
	b, _ := json.Marshal(tokens)
	attrs["csi.storage.k8s.io/serviceAccount.tokens"] = string(b)
	req.Secrets = `{"clientid":"check","clientsecret":"check"}`
	if len(k.secretRefs) > 0 && !slices.Contains(k.secretRefs, true) {
		req.Secrets = ""
	}
	a, _ := json.Marshal(attrs)
	req.Attributes = string(a)
	return req, true
}

// classLine finds the parameter a parser error names, and the object's
// entry inside the objects block.
func (d Document) classLine(field, object string) int {
	key := field
	if strings.Contains(key, "/") || key == "" {
		key = "objects"
	}
	line := d.line("spec", "parameters", key)
	if key != "objects" || object == "" {
		return line
	}
	// object is "<index> <name>": find "objectName: <name>" in the block.
	_, objName, _ := strings.Cut(object, " ")
	spec, _ := d.obj["spec"].(map[string]any)
	params, _ := spec["parameters"].(map[string]any)
	text, _ := params["objects"].(string)
	for i, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "objectName:"); ok && strings.Trim(strings.TrimSpace(v), `"'`) == objName && objName != "" {
			return line + 1 + i
		}
	}
	return line
}

// stubCloudFile is a cloud file with the fields a class's own file must
// have, standing in for one the check cannot read.
func stubCloudFile() string {
	f, err := os.CreateTemp("", "kvmount-check-cloud-*.json")
	if err != nil {
		return ""
	}
	defer f.Close()
	_, _ = f.WriteString(`{"name":"AzureStackCloud","activeDirectoryEndpoint":"https://login.example/","keyVaultEndpoint":"https://vault.example/","keyVaultDNSSuffix":"vault.example"}`)
	return f.Name()
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

// dig follows keys through nested mappings.
func dig(obj map[string]any, keys ...string) map[string]any {
	cur := obj
	for _, k := range keys {
		next, _ := cur[k].(map[string]any)
		if next == nil {
			return map[string]any{}
		}
		cur = next
	}
	return cur
}

// seqLine is the line of element i of the sequence at path.
func (d Document) seqLine(path []string, i int) int {
	n := d.node
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, key := range path {
		if n.Kind != yaml.MappingNode {
			return d.line(path...)
		}
		var next *yaml.Node
		for j := 0; j+1 < len(n.Content); j += 2 {
			if n.Content[j].Value == key {
				next = n.Content[j+1]
			}
		}
		if next == nil {
			return d.line(path...)
		}
		n = next
	}
	if n.Kind == yaml.SequenceNode && i < len(n.Content) {
		return n.Content[i].Line
	}
	return d.line(path...)
}
