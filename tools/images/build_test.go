package main

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// TestReproducible builds kvmount's two images twice from the same commit
// and checks that the digests are the same, and that each image says what
// it is (OCI labels), runs as the user it must and holds the platforms
// asked for. One platform keeps it quick; the release builds two.
func TestReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries twice")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	build := func() (string, []byte) {
		cfg := config{root: root, out: t.TempDir(), repo: "example.test/kvmount", version: "v0.0.0-test",
			source: "https://example.test/kvmount", platforms: []string{"linux/" + hostArch()}, productOnly: true}
		if err := run(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		d, err := os.ReadFile(filepath.Join(cfg.out, "digests.txt"))
		if err != nil {
			t.Fatal(err)
		}
		return cfg.out, d
	}
	out1, d1 := build()
	_, d2 := build()
	if string(d1) != string(d2) {
		t.Fatalf("two builds of one commit differ:\n%s\n%s", d1, d2)
	}
	for title, user := range map[string]string{"secrets-store-csi-driver": "0:0", "provider-azure": "65532:65532", "secrets-sync-controller": "65532:65532"} {
		checkImage(t, filepath.Join(out1, title+".oci.tar"), title, user)
	}
}

func checkImage(t *testing.T, archive, title, user string) {
	t.Helper()
	dir := t.TempDir()
	if err := untar(archive, dir); err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	topm, err := top.IndexManifest()
	if err != nil || len(topm.Manifests) != 1 {
		t.Fatalf("%s: want one index in the layout, got %v (%v)", archive, topm, err)
	}
	if got := topm.Manifests[0].Annotations["io.containerd.image.name"]; got != "example.test/kvmount/"+title+":v0.0.0-test" {
		t.Errorf("%s: image name %q", title, got)
	}
	idx, err := top.ImageIndex(topm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, m := range im.Manifests {
		platforms = append(platforms, m.Platform.OS+"/"+m.Platform.Architecture)
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Config.User != user {
			t.Errorf("%s runs as %q, want %q", title, cf.Config.User, user)
		}
		for _, l := range []string{"org.opencontainers.image.source", "org.opencontainers.image.revision", "org.opencontainers.image.version"} {
			if cf.Config.Labels[l] == "" {
				t.Errorf("%s has no label %s", title, l)
			}
		}
		if layers, _ := img.Layers(); len(layers) != 1 {
			t.Errorf("%s has %d layers, want the binary's one on an empty base", title, len(layers))
		}
	}
	if !slices.Equal(platforms, []string{"linux/" + hostArch()}) {
		t.Errorf("%s platforms %v", title, platforms)
	}
}

// untar unpacks an OCI archive (regular files only, as writeArchive makes).
func untar(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, tr)
		out.Close()
		if err != nil {
			return err
		}
	}
}
