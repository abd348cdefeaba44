// Package demo plays the seed document's three identity methods — pod
// identity, a user-assigned and a system-assigned managed identity — and
// then identity binding, which upstream now recommends on AKS, on the
// local environment, printing each command in the seed's own form (az
// replaced by azsim) and the seed's YAML with only its placeholders filled,
// then the files each pod got. It also shows the two failures users meet
// most: a pod-identity pod without a matching binding, and a node with two
// user-assigned identities while userAssignedIdentityID is empty. Last, it
// syncs the same secret into a Kubernetes Secret without a pod (SecretSync).
package demo

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"kvmount.dev/kvmount/internal/azsim/cli"
	"kvmount.dev/kvmount/internal/localcluster"
	"kvmount.dev/kvmount/internal/localenv"
)

//go:embed manifests/*.yaml
var manifests embed.FS

// Vault and objects of the demo.
const (
	vault = "kvmount-demo"
	rg    = localenv.ResourceGroup
	aks   = localenv.ClusterName
)

// Outcomes is how many rows a full run has: four mounts, two failures,
// one Secret synced without a pod.
const Outcomes = 7

// Result is one row of the final table.
type Result struct {
	Method, Identity, Pod, Objects, Outcome string
	OK                                      bool
}

// demo is one run.
type demo struct {
	env  *localenv.Env
	kube kubernetes.Interface
	out  io.Writer
	vars map[string]string
	rows []Result
}

// Play runs the three sections and the two failures on env and returns the
// table's rows; an error means the demo could not run at all.
func Play(ctx context.Context, env *localenv.Env, out io.Writer) ([]Result, error) {
	kube, err := env.Cluster.Client()
	if err != nil {
		return nil, err
	}
	d := &demo{env: env, kube: kube, out: out, vars: map[string]string{"<key-vault-name>": vault, "<tenant-Id>": env.TenantID, "<tenant-id>": env.TenantID}}
	for _, step := range []func(context.Context) error{d.vault, d.podIdentity, d.userAssigned, d.systemAssigned, d.identityBinding, d.secretSync} {
		if err := step(ctx); err != nil {
			return d.rows, err
		}
	}
	return d.rows, nil
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

func (d *demo) heading(s string) {
	d.say("\n%s\n%s", s, strings.Repeat("=", len(s)))
}

// az runs an azsim command as the seed writes it and prints its output.
func (d *demo) az(ctx context.Context, line string) (string, error) {
	return d.run(ctx, line, false)
}

// azQuiet shows the command in the seed's form but not its (long) output.
func (d *demo) azQuiet(ctx context.Context, line string) error {
	_, err := d.run(ctx, line, true)
	return err
}

func (d *demo) run(ctx context.Context, line string, quiet bool) (string, error) {
	for k, v := range d.vars {
		line = strings.ReplaceAll(line, k, v)
	}
	d.say("\n$ %s", line)
	var buf strings.Builder
	args := append([]string{"--data-dir", d.env.AzsimDir}, strings.Fields(line)[1:]...)
	if quiet {
		args = append(args, "-o", "none")
	}
	if err := cli.Run(ctx, args, &buf); err != nil {
		return "", fmt.Errorf("%s: %w", line, err)
	}
	if out := indent(clip(buf.String(), 12)); out != "" {
		d.say("%s", out)
	}
	return strings.TrimSpace(buf.String()), nil
}

// apply shows a seed manifest with its placeholders filled and applies it.
func (d *demo) apply(ctx context.Context, name string, extra map[string]string) error {
	b, err := manifests.ReadFile("manifests/" + name)
	if err != nil {
		return err
	}
	text := string(b)
	for k, v := range d.vars {
		text = strings.ReplaceAll(text, k, v)
	}
	for k, v := range extra {
		text = strings.ReplaceAll(text, k, v)
	}
	d.say("\n$ kubectl apply -f %s\n%s", name, indent(text))
	return d.env.Cluster.Apply(ctx, []byte(text))
}

// vault creates the key vault the seed assumes, with secret1 and key1.
func (d *demo) vault(ctx context.Context) error {
	d.heading("Set-up: a key vault with secret1 and key1 (the seed assumes one)")
	for _, line := range []string{
		"azsim keyvault create -n <key-vault-name> -g " + rg + " --query properties.vaultUri -o tsv",
		"azsim keyvault secret set --vault-name <key-vault-name> -n secret1 --value hello-from-key-vault --query id -o tsv",
		"azsim keyvault key create --vault-name <key-vault-name> -n key1 --kty RSA --size 2048 --query key.kid -o tsv",
	} {
		if _, err := d.az(ctx, line); err != nil {
			return err
		}
	}
	return nil
}

// grant runs the seed's three set-policy lines for an identity.
func (d *demo) grant(ctx context.Context, placeholder string) error {
	for _, kind := range []string{"key", "secret", "certificate"} {
		if err := d.azQuiet(ctx, "azsim keyvault set-policy -n <key-vault-name> --"+kind+"-permissions get --spn "+placeholder); err != nil {
			return err
		}
	}
	return nil
}

// mount waits for a pod's volume and returns the files' names and the
// content of secret1, or the pod's events if it never mounts.
func (d *demo) mount(ctx context.Context, pod string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		p, err := d.kube.CoreV1().Pods("default").Get(ctx, pod, metav1.GetOptions{})
		if err == nil && p.Spec.NodeName != "" {
			dir := d.volumeDir(p)
			if _, err := os.Stat(filepath.Join(dir, "secret1")); err == nil {
				if d.env.Cluster.Runtime() == localcluster.RuntimeContainerd {
					return d.validate(ctx, pod, time.Until(deadline))
				}
				return d.showFiles(p.Spec.NodeName, dir), nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("pod %s has no files after %s; its events: %s", pod, timeout, strings.Join(d.events(ctx, pod), " | "))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (d *demo) volumeDir(p *corev1.Pod) string {
	for _, n := range d.env.Cluster.Nodes {
		if n.Name == p.Spec.NodeName {
			return filepath.Join(n.RootDir, "pods", string(p.UID), "volumes", "kubernetes.io~csi", "secrets-store01-inline", "mount")
		}
	}
	return ""
}

// validate is the article's own check, from inside the pod's container:
// `kubectl exec <pod> -- ls /mnt/secrets-store/`, then secret1's content.
// It returns the files the container sees.
func (d *demo) validate(ctx context.Context, pod string, timeout time.Duration) (string, error) {
	ls, err := d.exec(ctx, pod, timeout, "ls", "/mnt/secrets-store/")
	if err != nil {
		return "", err
	}
	if _, err := d.exec(ctx, pod, timeout, "cat", "/mnt/secrets-store/secret1"); err != nil {
		return "", err
	}
	return strings.Join(strings.Fields(ls), ", "), nil
}

// exec runs a command in the pod's container as the user would with
// kubectl, printing both; the container may still be starting, so it
// retries until timeout. target is a pod's name or deploy/<name>.
//
// Only the command's standard output is returned and parsed: kubectl
// writes its own warnings and client-side logs to standard error (more of
// them on a busy machine), and those must not read as the container's
// files. They are shown after the output, marked as kubectl's.
func (d *demo) exec(ctx context.Context, target string, timeout time.Duration, cmd ...string) (string, error) {
	line := "kubectl exec " + target + " -- " + strings.Join(cmd, " ")
	deadline := time.Now().Add(timeout)
	for {
		var stdout, stderr bytes.Buffer
		c := d.env.Cluster.Kubectl(ctx, append([]string{"exec", target, "--"}, cmd...)...)
		c.Stdout, c.Stderr = &stdout, &stderr
		err := c.Run()
		if err == nil {
			d.say("\n$ %s\n%s", line, indent(stdout.String()))
			if msg := strings.TrimSpace(stderr.String()); msg != "" {
				d.say("    (kubectl's standard error: %s)", msg)
			}
			return stdout.String(), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s: %w: %s", line, err, strings.TrimSpace(stdout.String()+" "+stderr.String()))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (d *demo) showFiles(node, dir string) string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "..") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	d.say("\nOn node %s, the pod's /mnt/secrets-store is %s:", node, dir)
	for _, n := range names {
		b, _ := os.ReadFile(filepath.Join(dir, n))
		first, _, _ := strings.Cut(string(b), "\n")
		d.say("  %-8s %s", n, first)
	}
	return strings.Join(names, ", ")
}

// failure waits for a FailedMount event whose message contains want and
// shows it.
func (d *demo) failure(ctx context.Context, pod, want string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, ev := range d.events(ctx, pod) {
			if strings.Contains(ev, want) {
				d.say("\n$ kubectl describe pod %s   # the pod's event:\n  %s", pod, ev)
				return ev, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("pod %s: no event with %q after %s; events: %s", pod, want, timeout, strings.Join(d.events(ctx, pod), " | "))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (d *demo) events(ctx context.Context, pod string) []string {
	list, err := d.kube.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("involvedObject.name", pod).String()})
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range list.Items {
		switch {
		case e.Source.Component == "secrets-store-csi-driver":
			out = append(out, e.Reason+": "+e.Message)
		case e.Source.Component == "kubelet" && e.Reason == "FailedMount":
			// kubelet records a failed mount with the driver's message
			// after its own prefix ("MountVolume.SetUp failed for volume
			// … : rpc error: code = … desc = "): the message is the part
			// a user needs.
			_, msg, ok := strings.Cut(e.Message, " desc = ")
			if !ok {
				msg = e.Message
			}
			out = append(out, e.Reason+": "+msg)
		}
	}
	return out
}

func (d *demo) row(method, identity, pod, objects, outcome string, ok bool) {
	d.rows = append(d.rows, Result{Method: method, Identity: identity, Pod: pod, Objects: objects, Outcome: outcome, OK: ok})
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

func clip(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= n {
		return s
	}
	return strings.Join(lines[:n], "\n") + fmt.Sprintf("\n… (%d more lines)", len(lines)-n)
}
