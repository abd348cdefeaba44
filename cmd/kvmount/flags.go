package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// errHelp is a verb's -h/--help: its usage was printed; exit 0.
var errHelp = flag.ErrHelp

// parseVerb parses a verb's arguments with flags before or after the
// positional arguments (kvmount files ns/pod --dir D works as the docs
// write it). -h and --help print the verb's usage to out and return
// errHelp; other flag errors are usage errors.
func parseVerb(fs *flag.FlagSet, args []string, out io.Writer, synopsis string) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var positional []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			printVerbUsage(out, fs, synopsis)
			return nil, errHelp
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errUsage, err)
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func printVerbUsage(out io.Writer, fs *flag.FlagSet, synopsis string) {
	fmt.Fprintf(out, "Usage: %s\n\nFlags:\n", synopsis)
	fs.SetOutput(out)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// wantsHelp reports whether args ask for help before any verb parsing.
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			return true
		}
		if !strings.HasPrefix(a, "-") {
			return false
		}
	}
	return false
}
