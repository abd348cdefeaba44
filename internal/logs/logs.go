// Package logs gives kvmount's daemons upstream's logging: klog's flags
// with klog's meaning (-v=N levels, -vmodule, -logtostderr, -log_file, …),
// klog's text format by default and JSON with --log-format-json (or
// --logging-format=json), as the upstream driver and provider have, so an
// operator's arguments and log pipeline keep working. The daemons log
// through log/slog; debug is klog's -v=4, and slog.Level(-n) is -v=n.
//
// Whatever the format, nothing here ever logs a request: callers log who,
// where, how long and the outcome, never secrets or tokens.
package logs

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
)

// Options are the logging flags' values.
type Options struct {
	json   bool
	format string
	v      *verbosity
}

// AddFlags registers klog's flags, --log-format-json and --logging-format
// on fs.
func AddFlags(fs *flag.FlagSet) *Options {
	o := &Options{}
	kfs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(kfs)
	kfs.VisitAll(func(f *flag.Flag) {
		if f.Name == "v" {
			o.v = &verbosity{klog: f.Value}
			fs.Var(o.v, "v", "log verbosity, as klog's -v=N (4: debug; bare -v means 4). Secrets are never logged at any level")
			return
		}
		fs.Var(f.Value, f.Name, f.Usage)
	})
	fs.BoolVar(&o.json, "log-format-json", false, "log JSON (ts, caller, msg, v, then the fields) instead of klog's text format")
	fs.StringVar(&o.format, "logging-format", "text", "log format: text (klog's) or json; --log-format-json=true means json")
	return o
}

// verbosity is klog's -v, which also accepts kvmount's older bare -v.
type verbosity struct {
	klog  flag.Value
	level int
}

func (v *verbosity) String() string {
	if v == nil || v.klog == nil {
		return "0"
	}
	return v.klog.String()
}

// IsBoolFlag lets -v stand alone (debug, as kvmount's -v used to be).
func (v *verbosity) IsBoolFlag() bool { return true }

func (v *verbosity) Set(s string) error {
	switch s {
	case "true":
		s = "4"
	case "false":
		s = "0"
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return fmt.Errorf("log verbosity %q: want a number, as klog's -v=N", s)
	}
	v.level = n
	return v.klog.Set(s)
}

// NormalizeArgs joins "-v N" into "-v=N": -v also stands alone, so the
// flag package would otherwise take N for an argument.
func NormalizeArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if (a == "-v" || a == "--v") && i+1 < len(args) {
			if _, err := strconv.Atoi(args[i+1]); err == nil {
				out = append(out, a+"="+args[i+1])
				i++
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// Logger is the logger the flags ask for, writing to stderr.
func (o *Options) Logger() (*slog.Logger, error) {
	return o.LoggerTo(os.Stderr)
}

// LoggerTo is Logger writing JSON to w (klog's text goes where klog's
// flags say: stderr by default).
func (o *Options) LoggerTo(w io.Writer) (*slog.Logger, error) {
	switch strings.ToLower(o.format) {
	case "json":
		o.json = true
	case "text", "":
	default:
		return nil, fmt.Errorf("--logging-format %q: use text or json", o.format)
	}
	if o.json {
		l := slog.New(newJSONHandler(w, o.level()))
		// What libraries log through klog (client-go) comes out as JSON too.
		klog.SetSlogLogger(l)
		return l, nil
	}
	return slog.New(logr.ToSlogHandler(klog.Background())), nil
}

func (o *Options) level() int {
	if o.v == nil {
		return 0
	}
	return o.v.level
}

// Flush writes what klog buffers; daemons call it before exiting.
func Flush() { klog.Flush() }

// newJSONHandler writes the Kubernetes component-base JSON shape: ts
// (seconds since the epoch), caller, msg, v (verbosity), err for errors,
// then the fields.
func newJSONHandler(w io.Writer, verbosity int) slog.Handler {
	opts := &slog.HandlerOptions{AddSource: true, Level: slog.Level(-verbosity), ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) > 0 {
			return a
		}
		switch a.Key {
		case slog.TimeKey:
			t := a.Value.Time()
			return slog.Float64("ts", float64(t.UnixNano())/1e9)
		case slog.LevelKey:
			l := a.Value.Any().(slog.Level)
			if l >= slog.LevelWarn {
				return slog.String("level", strings.ToLower(l.String()))
			}
			return slog.Int("v", int(-min(l, 0)))
		case slog.SourceKey:
			if s, ok := a.Value.Any().(*slog.Source); ok {
				return slog.String("caller", filepath.Base(s.File)+":"+strconv.Itoa(s.Line))
			}
		}
		return a
	}}
	return slog.NewJSONHandler(w, opts)
}
