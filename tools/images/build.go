package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type config struct {
	root, out, repo, version, revision, source, busybox string
	platforms                                           []string
	productOnly                                         bool
	// push writes kvmount's images to their registry (a release) after
	// building them, with the credentials of `docker login`.
	push bool
}

// image is one image to build: its reference, what goes in it, and how it
// runs.
type image struct {
	ref   string
	title string
	// binary builds the entrypoint for a platform into a file.
	binary    func(ctx context.Context, platform, dst string) error
	path      string
	user      string
	platforms []string
	// extra adds more entries to the layer (busybox's applet links).
	extra func(*tar.Writer, time.Time) error
}

func run(ctx context.Context, cfg config) error {
	if cfg.revision == "" {
		out, err := exec.CommandContext(ctx, "git", "-C", cfg.root, "rev-parse", "HEAD").Output()
		if err != nil {
			return fmt.Errorf("git rev-parse HEAD: %w (pass --revision)", err)
		}
		cfg.revision = strings.TrimSpace(string(out))
	}
	epoch, err := sourceDate(ctx, cfg.root)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	// The images are built at the same time (two at once: compressing
	// layers is CPU work, and a cached go build is mostly waiting), then
	// pushed and listed in their order.
	ims := images(cfg)
	built := make([]struct {
		idx    v1.ImageIndex
		digest v1.Hash
		err    error
	}, len(ims))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i, im := range ims {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			built[i].idx, built[i].digest, built[i].err = buildImage(ctx, cfg, im, epoch)
		})
	}
	wg.Wait()
	var lines []string
	for i, im := range ims {
		if err := built[i].err; err != nil {
			return fmt.Errorf("%s: %w", im.ref, err)
		}
		if cfg.push {
			if err := push(ctx, im.ref, built[i].idx); err != nil {
				return err
			}
		}
		line := fmt.Sprintf("%s@%s", im.ref, built[i].digest)
		fmt.Println(line)
		lines = append(lines, line)
	}
	return os.WriteFile(filepath.Join(cfg.out, "digests.txt"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// sourceDate is the images' timestamp: $SOURCE_DATE_EPOCH, else the time
// of the commit, so a rebuild of one commit is identical.
func sourceDate(ctx context.Context, root string) (time.Time, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	out, err := exec.CommandContext(ctx, "git", "-C", root, "log", "-1", "--format=%ct").Output()
	if err != nil {
		return time.Unix(0, 0).UTC(), nil
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	return time.Unix(n, 0).UTC(), nil
}

func images(cfg config) []image {
	goBin := func(pkg, dir string) func(context.Context, string, string) error {
		return func(ctx context.Context, platform, dst string) error {
			return goBuild(ctx, cfg, dir, pkg, platform, dst)
		}
	}
	out := []image{
		{ref: cfg.repo + "/secrets-store-csi-driver:" + cfg.version, title: "secrets-store-csi-driver",
			binary: goBin("./cmd/secrets-store-csi-driver", cfg.root), path: "/usr/local/bin/secrets-store-csi-driver",
			user: "0:0", platforms: cfg.platforms}, // mounts tmpfs: root
		{ref: cfg.repo + "/provider-azure:" + cfg.version, title: "provider-azure",
			binary: goBin("./cmd/provider-azure", cfg.root), path: "/usr/local/bin/provider-azure",
			user: "65532:65532", platforms: cfg.platforms},
		{ref: cfg.repo + "/secrets-sync-controller:" + cfg.version, title: "secrets-sync-controller",
			binary: goBin("./cmd/secrets-sync-controller", cfg.root), path: "/usr/local/bin/secrets-sync-controller",
			user: "65532:65532", platforms: cfg.platforms},
	}
	if cfg.productOnly {
		return out
	}
	host := []string{"linux/" + hostArch()}
	return append(out,
		image{ref: "registry.k8s.io/pause:3.10", title: "pause", binary: goBin("./pause", filepath.Join(cfg.root, "tools", "images")),
			path: "/pause", user: "65535:65535", platforms: host},
		image{ref: "k8s.gcr.io/e2e-test-images/busybox:1.29-1", title: "busybox", binary: copyFile(cfg.busybox),
			path: "/bin/busybox", user: "0:0", platforms: host, extra: busyboxLinks(cfg.busybox)},
	)
}

// goBuild builds a static binary: reproducible (-trimpath, no build ID),
// the version set for --version.
func goBuild(ctx context.Context, cfg config, dir, pkg, platform, dst string) error {
	osName, arch, _ := strings.Cut(platform, "/")
	ld := "-s -w -buildid= -X kvmount.dev/kvmount/internal/version.Version=" + cfg.version
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ld, "-o", dst, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+osName, "GOARCH="+arch, "GOFLAGS=-mod=readonly")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

func copyFile(src string) func(context.Context, string, string) error {
	return func(_ context.Context, _, dst string) error {
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("%w (install busybox-static: scripts/host-deps.sh)", err)
		}
		return os.WriteFile(dst, b, 0o755)
	}
}

// busyboxLinks adds /bin/<applet> → busybox for every applet, as
// `busybox --install` would, so sleep, sh, ls and cat exist.
func busyboxLinks(bin string) func(*tar.Writer, time.Time) error {
	return func(tw *tar.Writer, t time.Time) error {
		out, err := exec.Command(bin, "--list").Output()
		if err != nil {
			return fmt.Errorf("%s --list: %w", bin, err)
		}
		applets := strings.Fields(string(out))
		slices.Sort(applets)
		for _, a := range applets {
			if a == "busybox" || strings.Contains(a, "/") {
				continue
			}
			hdr := &tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: t, Format: tar.FormatPAX}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
		}
		return nil
	}
}

func hostArch() string {
	out, err := exec.Command("go", "env", "GOARCH").Output()
	if err != nil {
		return "amd64"
	}
	return strings.TrimSpace(string(out))
}

// push writes idx to the registry as ref.
func push(ctx context.Context, ref string, idx v1.ImageIndex) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image reference %s: %w", ref, err)
	}
	if err := remote.WriteIndex(tag, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// buildImage builds im for its platforms as one index, writes it as an OCI
// archive <out>/<title>.oci.tar and returns the index and its digest.
func buildImage(ctx context.Context, cfg config, im image, epoch time.Time) (v1.ImageIndex, v1.Hash, error) {
	tmp, err := os.MkdirTemp("", "kvmount-image-")
	if err != nil {
		return nil, v1.Hash{}, err
	}
	defer os.RemoveAll(tmp)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, platform := range im.platforms {
		bin := filepath.Join(tmp, strings.ReplaceAll(platform, "/", "-"))
		if err := im.binary(ctx, platform, bin); err != nil {
			return nil, v1.Hash{}, err
		}
		img, err := platformImage(cfg, im, platform, bin, epoch)
		if err != nil {
			return nil, v1.Hash{}, err
		}
		osName, arch, _ := strings.Cut(platform, "/")
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: osName, Architecture: arch}}})
	}
	digest, err := idx.Digest()
	if err != nil {
		return nil, v1.Hash{}, err
	}
	return idx, digest, writeArchive(idx, im.ref, filepath.Join(tmp, "layout"), filepath.Join(cfg.out, im.title+".oci.tar"), epoch)
}

// platformImage is the binary at im.path in one layer on an empty base.
func platformImage(cfg config, im image, platform, bin string, epoch time.Time) (v1.Image, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range parents(im.path) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(im.path, "/"), Mode: 0o755, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if im.extra != nil {
		if err := im.extra(tw, epoch); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerBytes)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON), layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	osName, arch, _ := strings.Cut(platform, "/")
	cf.OS, cf.Architecture, cf.Created = osName, arch, v1.Time{Time: epoch}
	cf.Config = v1.Config{Entrypoint: []string{im.path}, User: im.user, Env: []string{"PATH=/usr/local/bin:/bin"},
		Labels: map[string]string{
			"org.opencontainers.image.source":   cfg.source,
			"org.opencontainers.image.revision": cfg.revision,
			"org.opencontainers.image.version":  cfg.version,
			"org.opencontainers.image.title":    im.title,
			"org.opencontainers.image.licenses": "Apache-2.0",
		}}
	cf.History = []v1.History{{Created: v1.Time{Time: epoch}, CreatedBy: "kvmount tools/images: " + im.title}}
	return mutate.ConfigFile(img, cf)
}

// parents lists the directories above path, outermost first.
func parents(path string) []string {
	var out []string
	for d := filepath.Dir(strings.TrimPrefix(path, "/")); d != "." && d != "/"; d = filepath.Dir(d) {
		out = append([]string{d}, out...)
	}
	return out
}

// writeArchive writes idx as an OCI layout named ref and tars it with
// fixed timestamps and sorted names into dst.
func writeArchive(idx v1.ImageIndex, ref, dir, dst string, epoch time.Time) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	ann := map[string]string{"org.opencontainers.image.ref.name": ref, "io.containerd.image.name": ref}
	if err := p.AppendIndex(idx, layout.WithAnnotations(ann)); err != nil {
		return err
	}
	var files []string
	err = filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		return err
	}
	slices.Sort(files)
	f, err := os.Create(dst + ".tmp")
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: filepath.ToSlash(rel), Mode: 0o644, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(dst+".tmp", dst)
}
