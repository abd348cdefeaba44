// Package version is kvmount's version, the same in all four binaries. A
// release build sets it (-ldflags -X kvmount.dev/kvmount/internal/version.Version=v1.2.3);
// the revision and its date come from the build's VCS stamp.
package version

import (
	"encoding/json"
	"runtime/debug"
)

// Version is the release, or v0.1.0 for a development build.
var Version = "v0.1.0"

// JSON is the --version output: version, the VCS revision and its date
// (upstream prints version and buildDate).
func JSON() string {
	out := map[string]string{"version": Version}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				out["revision"] = s.Value
			case "vcs.time":
				out["buildDate"] = s.Value
			}
		}
	}
	b, _ := json.Marshal(out)
	return string(b)
}
