// Package console serves the web console: the React app built from web/ into
// dist/ and embedded in the manager's binary. It is static files only; the app
// talks to the manager through the public REST API like any other client.
package console

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed all:dist
var dist embed.FS

// securityHeaders go on every answer. The built app has no inline script or
// style element, so the policy can forbid both.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
	"X-Content-Type-Options":  "nosniff",
	"X-Frame-Options":         "DENY",
	"Referrer-Policy":         "no-referrer",
}

// notBuilt answers when the binary was built without the console's assets
// (go build without make): the API works, the console says how to get it.
const notBuilt = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Bulkhead</title></head>
<body><h1>Bulkhead console not built</h1>
<p>This manager was built without the web console's assets: run <code>make console</code> (or <code>make build</code>) and rebuild.
The REST API is served under <code>/api/v1</code>.</p></body></html>
`

// Handler serves the console at "/": files from the build, index.html for
// every other GET path (the app's own routes, such as /policy), and 405 for
// methods other than GET and HEAD.
func Handler() http.Handler {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	return newHandler(sub)
}

// Built reports whether the binary carries the built console.
func Built() bool {
	_, err := fs.Stat(dist, "dist/index.html")
	return err == nil
}

type handler struct {
	files fs.FS
	index []byte // nil when the console was not built
	start time.Time
}

func newHandler(files fs.FS) *handler {
	h := &handler{files: files, start: time.Now()}
	if b, err := fs.ReadFile(files, "index.html"); err == nil {
		h.index = b
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for k, v := range securityHeaders {
		w.Header().Set(k, v)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if h.index == nil {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(notBuilt))
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name != "" && name != "index.html" {
		if f, err := fs.ReadFile(h.files, name); err == nil {
			if strings.HasPrefix(name, "assets/") {
				// Vite puts a content hash in every file name under assets/.
				w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
			} else {
				w.Header().Set("Cache-Control", "no-cache")
			}
			http.ServeContent(w, r, name, h.start, bytes.NewReader(f))
			return
		}
		// A missing file is a 404; anything without an extension is one of the
		// app's routes and gets the app.
		if strings.HasPrefix(name, "assets/") || path.Ext(name) != "" {
			http.NotFound(w, r)
			return
		}
	}
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "index.html", h.start, bytes.NewReader(h.index))
}
