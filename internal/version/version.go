// Package version holds the build's version, set with -ldflags "-X .../version.Version=v1.2.3".
package version

import "runtime/debug"

// Version is the release version; "dev" for a plain go build.
var Version = "dev"

// String returns the version with the VCS revision when the build recorded one.
func String() string {
	v := Version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return v
}
