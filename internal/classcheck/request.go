// Requests: the Mount request the driver would send the provider for each
// class, built offline so that the provider's own parser checks it.

package classcheck

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"slices"

	"kvmount.dev/kvmount/internal/azure/config"
)

// fakeToken is a JWT-shaped service-account token, for parsing classes
// that need one: the real one comes from kubelet at mount time.
func fakeToken() string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString([]byte(`{"sub":"system:serviceaccount:check:check"}`)) + ".c2ln"
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
