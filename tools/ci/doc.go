// Package ci checks the repository's CI workflows (.github/workflows) with
// actionlint, used as a Go module, since they cannot run here.
package ci
