// Package ui serves the web UI: the files `make ui` builds from web/ into dist/, embedded in the
// binary, or, when the UI was not built, a page that says how to build it.
package ui
