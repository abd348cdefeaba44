package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
	"sigs.k8s.io/yaml"
)

// requestFile is a Mount request as a person writes it: attributes and
// secrets as maps (or as the JSON strings the driver sends).
type requestFile struct {
	Attributes json.RawMessage   `json:"attributes"`
	Secrets    map[string]string `json:"secrets"`
	Permission string            `json:"permission"`
	TargetPath string            `json:"targetPath"`
}

// LoadRequest reads a Mount request from a JSON or YAML file.
func LoadRequest(path string) (*v1alpha1.MountRequest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f requestFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	attrs := string(f.Attributes)
	var asString string
	if json.Unmarshal(f.Attributes, &asString) == nil {
		attrs = asString // already the driver's JSON string
	}
	if attrs == "" {
		return nil, fmt.Errorf("%s: no attributes", path)
	}
	return build(attrs, f.Secrets, f.Permission, f.TargetPath)
}

// FromClass builds the request the driver would send for pod (a Pod
// manifest) mounting class (a SecretProviderClass manifest).
func FromClass(classPath, podPath string, secrets map[string]string) (*v1alpha1.MountRequest, error) {
	var spc struct {
		Metadata struct{ Name string } `json:"metadata"`
		Spec     struct {
			Parameters map[string]string `json:"parameters"`
		} `json:"spec"`
	}
	var pod struct {
		Metadata struct{ Name, Namespace, UID string } `json:"metadata"`
		Spec     struct {
			ServiceAccountName string `json:"serviceAccountName"`
		} `json:"spec"`
	}
	for _, doc := range []struct {
		path string
		v    any
	}{{classPath, &spc}, {podPath, &pod}} {
		data, err := os.ReadFile(doc.path)
		if err != nil {
			return nil, err
		}
		if err := yaml.Unmarshal(data, doc.v); err != nil {
			return nil, fmt.Errorf("%s: %w", doc.path, err)
		}
	}
	attrs := map[string]string{}
	for k, v := range spc.Spec.Parameters {
		attrs[k] = v
	}
	ns, sa := orDefault(pod.Metadata.Namespace, "default"), orDefault(pod.Spec.ServiceAccountName, "default")
	attrs["secretProviderClass"] = spc.Metadata.Name
	attrs["csi.storage.k8s.io/pod.name"] = pod.Metadata.Name
	attrs["csi.storage.k8s.io/pod.namespace"] = ns
	attrs["csi.storage.k8s.io/pod.uid"] = orDefault(pod.Metadata.UID, "bench-"+pod.Metadata.Name)
	attrs["csi.storage.k8s.io/serviceAccount.name"] = sa
	b, _ := json.Marshal(attrs)
	return build(string(b), secrets, "", "")
}

func build(attrs string, secrets map[string]string, perm, target string) (*v1alpha1.MountRequest, error) {
	s, _ := json.Marshal(secrets)
	if perm == "" {
		perm = "420"
	}
	if target == "" {
		target = "/tmp/kvmount-bench"
	}
	return &v1alpha1.MountRequest{Attributes: attrs, Secrets: string(s), Permission: perm, TargetPath: target}, nil
}

func orDefault(v, d string) string {
	if strings.TrimSpace(v) == "" {
		return d
	}
	return v
}
