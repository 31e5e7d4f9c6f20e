package ui

import (
	"embed"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

// dist holds the built UI (index.html, app.js, app.css, ...; not committed) and the committed
// placeholder.html, so that the directory always exists and `go build` needs no npm.
//
//go:embed all:dist
var dist embed.FS

// CSP is the Content-Security-Policy of every UI response. Scripts and styles come only from
// the gateway's own files, never inline, so recorded content that holds HTML cannot run even if
// it were ever inserted as markup (the UI inserts it only as text). 'wasm-unsafe-eval' lets the
// terminal player compile its WebAssembly terminal emulator; it allows no JavaScript eval.
const CSP = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; " +
	"font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Built reports whether the embedded UI was built (index.html exists).
func Built() bool {
	_, err := fs.Stat(dist, "dist/index.html")
	return err == nil
}

// Handler serves the UI: "/" is the single page (its routes are in the URL fragment), other
// paths are the built files; anything else is 404.
func Handler() http.Handler {
	files, _ := fs.Sub(dist, "dist")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if name == "" || name == "index.html" {
			name = "index.html"
			if !Built() {
				name = "placeholder.html"
			}
		}
		b, err := fs.ReadFile(files, name)
		if err != nil || name == "placeholder.html" && r.URL.Path != "/" && r.URL.Path != "/index.html" {
			http.NotFound(w, r)
			return
		}
		ct := mime.TypeByExtension(path.Ext(name))
		if ct == "" {
			ct = "application/octet-stream"
		}
		h.Set("Content-Type", ct)
		// Names are not content-hashed: revalidate every time (they are small, and local).
		h.Set("Cache-Control", "no-cache")
		if r.Method == http.MethodHead {
			return
		}
		w.Write(b)
	})
}
