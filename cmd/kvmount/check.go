package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"kvmount.dev/kvmount/internal/classcheck"
)

// errCheckFailed is a check that found errors; the findings are printed.
var errCheckFailed = errors.New("the manifests have errors")

// stringsFlag is a repeatable flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// check is `kvmount check -f FILE|DIR|- ... [-o text|json]`: what the
// provider and driver would refuse or warn about in SecretProviderClass
// and pod manifests, without contacting anything. Its exit status is 1
// when there is an error, so that CI pipelines stop there.
func check(args []string, stdin io.Reader, out io.Writer) error {
	var files stringsFlag
	var format string
	fs := flag.NewFlagSet("kvmount check", flag.ContinueOnError)
	fs.Var(&files, "f", "a manifest file, a directory of .yaml/.yml files, or - for standard input (repeatable)")
	fs.StringVar(&format, "o", "text", "output: text or json")
	pos, err := parseVerb(fs, args, out, "kvmount check -f FILE|DIR|- [-f …] [-o text|json]")
	if err != nil {
		return err
	}
	files = append(files, pos...)
	if len(files) == 0 {
		return fmt.Errorf("%w: kvmount check needs -f FILE, DIR or -", errUsage)
	}
	if format != "text" && format != "json" {
		return fmt.Errorf("%w: -o %q: use text or json", errUsage, format)
	}
	docs, findings := classcheck.Read(files, stdin)
	findings = append(findings, classcheck.Check(docs)...)
	if format == "json" {
		if findings == nil {
			findings = []classcheck.Finding{}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(findings); err != nil {
			return err
		}
	} else {
		for _, f := range findings {
			fmt.Fprintln(out, f)
		}
		if len(findings) == 0 {
			fmt.Fprintf(out, "%d document(s) checked: no problem found\n", len(docs))
		}
	}
	if classcheck.Failed(findings) {
		return errCheckFailed
	}
	return nil
}
