package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"kvmount.dev/kvmount/internal/demo"
	"kvmount.dev/kvmount/internal/localcluster"
	"kvmount.dev/kvmount/internal/localenv"
)

// runDemo is `kvmount demo`: a fresh environment, the seed's three
// sections and two failures, a table, and clean-up unless --keep.
func runDemo(ctx context.Context, args []string, out io.Writer) error {
	var dir string
	var keep bool
	fs := flag.NewFlagSet("kvmount demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&dir, "dir", "/var/lib/kvmount/demo", "state directory, emptied first")
	fs.BoolVar(&keep, "keep", false, "leave the environment running after the demo (Ctrl-C stops it)")
	pos, err := parseVerb(fs, args, out, "kvmount demo [--keep] [--dir DIR]")
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	if os.Geteuid() != 0 {
		return errors.New("demo must run as root: kubelet mounts tmpfs volumes; try `sudo make demo`")
	}
	if err := isolate(localcluster.RuntimeContainerd); err != nil {
		return err
	}
	progress := newProgress(out)
	binDir, err := ensureBins(ctx, progress)
	if err != nil {
		progress.close()
		return err
	}
	if err := fresh(dir); err != nil {
		progress.close()
		return err
	}
	start := time.Now()
	env, err := localenv.Start(ctx, localenv.Config{Dir: dir, BinDir: binDir, Nodes: 2, SyncController: true, Logf: progress.step})
	progress.close()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nLocal AKS-like environment up in %s: azsim, 2 nodes (scale set %s), the CSI driver and the Azure provider on each, the SecretSync controller.\n",
		time.Since(start).Round(100*time.Millisecond), "instances "+env.Nodes[0].Name+", …")
	rows, playErr := demo.Play(ctx, env, out)
	printTable(out, rows)
	ok := playErr == nil && len(rows) == demo.Outcomes
	for _, r := range rows {
		ok = ok && r.OK
	}
	if keep {
		printEnv(env, dir, time.Since(start))
		<-ctx.Done()
	}
	if err := env.Stop(); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	if !keep {
		_ = os.RemoveAll(dir)
	}
	switch {
	case playErr != nil:
		return fmt.Errorf("demo: %w", playErr)
	case !ok:
		return errors.New("demo: an expected success or failure did not happen (see the table)")
	}
	fmt.Fprintln(out, "\nAll three identity methods and identity binding mounted their objects, both failures were explained, and a SecretSync kept a Secret filled without a pod. Walk through it by hand: docs/walkthrough.md")
	return nil
}

// fresh empties dir, unmounting what an interrupted run may have left.
func fresh(dir string) error {
	if err := localcluster.UnmountAll(dir); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.MkdirAll(dir, 0o700)
}

func printTable(out io.Writer, rows []demo.Result) {
	fmt.Fprintln(out, "\nResult")
	fmt.Fprintln(out, "======")
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "METHOD\tIDENTITY\tPOD\tOBJECTS MOUNTED\tRESULT")
	for _, r := range rows {
		mark := "ok"
		if !r.OK {
			mark = "UNEXPECTED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s: %s\n", r.Method, r.Identity, r.Pod, r.Objects, mark, r.Outcome)
	}
	tw.Flush()
}
