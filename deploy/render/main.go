// Command render writes deploy/*.yaml, the plain manifests for clusters
// installed without Helm, from the chart, so that the two never drift: the
// chart rendered with the values below, split into one file per template,
// without Helm's own labels (a plain manifest is not managed by Helm).
//
//	go run ./deploy/render --helm bin/helm --chart deploy/helm/kvmount --out deploy
//
// The CSIDriver is rendered twice: csidriver.yaml applies on every
// supported Kubernetes version; kubernetes-1.35+/csidriver.yaml adds
// serviceAccountTokenInSecrets, a field older API servers reject.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// values of the plain manifests: rotation on (as kvmount's manifests have
// always had it), Secret sync RBAC in its own file, CRDs from deploy/crds.
var values = []string{"enableSecretRotation=true", "syncSecret.enabled=true", "crds.install=false",
	// The names and labels of upstream's plain manifests.
	"nameOverride=csi-secrets-store", "fullnameOverride=csi-secrets-store"}

func main() {
	helm := flag.String("helm", "bin/helm", "helm binary")
	chart := flag.String("chart", "deploy/helm/kvmount", "the chart")
	out := flag.String("out", "deploy", "where the manifests go")
	flag.Parse()
	if err := SyncSubchart(*chart, Subchart(*chart)); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
	if err := run(*helm, *chart, *out); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

func run(helm, chart, out string) error {
	files, err := render(helm, chart, "1.32.0")
	if err != nil {
		return err
	}
	newer, err := render(helm, chart, "1.35.0")
	if err != nil {
		return err
	}
	files[filepath.Join("kubernetes-1.35+", "csidriver.yaml")] = newer["csidriver.yaml"]
	// A template the chart no longer has leaves no manifest behind.
	stale, err := generated(out)
	if err != nil {
		return err
	}
	for _, name := range stale {
		if _, ok := files[name]; !ok {
			if err := os.Remove(filepath.Join(out, name)); err != nil {
				return err
			}
		}
	}
	for name, body := range files {
		path := filepath.Join(out, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, body, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// header starts every manifest render writes.
const header = "# Generated from the chart by deploy/render (make manifests): edit the chart.\n"

// generated lists the manifests under dir that render wrote (they start
// with header), relative to dir.
func generated(dir string) ([]string, error) {
	var out []string
	for _, pattern := range []string{"*.yaml", filepath.Join("kubernetes-*", "*.yaml")} {
		matches, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return nil, err
		}
		for _, m := range matches {
			b, err := os.ReadFile(m)
			if err != nil {
				return nil, err
			}
			if bytes.HasPrefix(b, []byte(header)) {
				rel, _ := filepath.Rel(dir, m)
				out = append(out, rel)
			}
		}
	}
	return out, nil
}

var (
	source    = regexp.MustCompile(`^# Source: [^/]+/templates/(.+)$`)
	helmLabel = regexp.MustCompile(`^\s+(helm\.sh/chart|app\.kubernetes\.io/managed-by|app\.kubernetes\.io/instance): `)
)

// render runs helm template for kubeVersion and splits its output by
// template.
func render(helm, chart, kubeVersion string) (map[string][]byte, error) {
	args := []string{"template", "kvmount", chart, "--namespace", "kube-system", "--kube-version", kubeVersion}
	for _, v := range values {
		args = append(args, "--set", v)
	}
	cmd := exec.Command(helm, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	rendered, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	files := map[string][]byte{}
	var name string
	sc := bufio.NewScanner(bytes.NewReader(rendered))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := source.FindStringSubmatch(line); m != nil {
			name = m[1]
			if len(files[name]) > 0 {
				files[name] = append(files[name], "---\n"...)
			} else {
				files[name] = []byte(header)
			}
			continue
		}
		if name == "" || line == "---" || helmLabel.MatchString(line) {
			continue
		}
		files[name] = append(files[name], line+"\n"...)
	}
	return files, sc.Err()
}

// Subchart is where the Azure-layout chart (kvmount-azure, beside chart)
// keeps its copy of chart: as upstream's Azure chart has the driver's chart
// as a dependency, kvmount-azure has kvmount's. A copy, not a link, so that
// it embeds (deploy.Chart), packages and checks out everywhere.
func Subchart(chart string) string {
	return filepath.Join(filepath.Dir(chart), "kvmount-azure", "charts", filepath.Base(chart))
}

// sharedTemplates are the named templates of src that the Azure-layout
// chart uses itself (its provider DaemonSet and RBAC): copied beside its own
// templates too, since Helm loads no template of a disabled subchart
// (secrets-store-csi-driver.install=false).
var sharedTemplates = []string{"_helpers.tpl", "_provider.tpl"}

// SyncSubchart makes dst an exact copy of the chart directory src, and
// copies src's shared named templates into the Azure-layout chart's own
// templates (as _kvmount<name>).
func SyncSubchart(src, dst string) error {
	for _, name := range sharedTemplates {
		b, err := os.ReadFile(filepath.Join(src, "templates", name))
		if err != nil {
			return err
		}
		own := filepath.Join(filepath.Dir(filepath.Dir(dst)), "templates", "_kvmount"+name)
		if err := os.WriteFile(own, append([]byte("{{/* Copied from ../kvmount/templates/"+name+" by deploy/render (make manifests): edit that. */}}\n"), b...), 0o644); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}
