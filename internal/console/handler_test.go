package console

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

func serve(h http.Handler, method, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w
}

func TestHandler(t *testing.T) {
	index := `<!doctype html><script type="module" src="/assets/index-abc123.js"></script>`
	h := newHandler(fstest.MapFS{
		"index.html":             {Data: []byte(index)},
		"assets/index-abc123.js": {Data: []byte("console.log(1)")},
		"favicon.svg":            {Data: []byte("<svg/>")},
	})
	for _, tc := range []struct {
		method, path string
		code         int
		body         string // prefix of the body
		cache        string
		ctype        string
	}{
		{"GET", "/", 200, index, "no-cache", "text/html"},
		{"GET", "/index.html", 200, index, "no-cache", "text/html"},
		{"GET", "/policy", 200, index, "no-cache", "text/html"},     // a client route
		{"GET", "/history/r3", 200, index, "no-cache", "text/html"}, // a deeper one
		{"GET", "/assets/index-abc123.js", 200, "console.log", "public, max-age=31536000, immutable", "text/javascript"},
		{"HEAD", "/assets/index-abc123.js", 200, "", "public, max-age=31536000, immutable", "text/javascript"},
		{"GET", "/favicon.svg", 200, "<svg/>", "no-cache", "image/svg+xml"},
		{"GET", "/assets/index-gone.js", 404, "404", "", ""}, // an old build's asset is not the app
		{"GET", "/robots.txt", 404, "404", "", ""},
		{"GET", "/../../etc/os-release.txt", 404, "404", "", ""}, // never outside the build
		{"POST", "/", 405, "method not allowed", "", ""},
		{"DELETE", "/policy", 405, "method not allowed", "", ""},
	} {
		w := serve(h, tc.method, tc.path)
		name := tc.method + " " + tc.path
		if w.Code != tc.code {
			t.Errorf("%s: %d, want %d", name, w.Code, tc.code)
		}
		if !strings.HasPrefix(w.Body.String(), tc.body) {
			t.Errorf("%s: body %.60q, want it to start with %.60q", name, w.Body.String(), tc.body)
		}
		if tc.cache != "" && w.Header().Get("Cache-Control") != tc.cache {
			t.Errorf("%s: Cache-Control %q, want %q", name, w.Header().Get("Cache-Control"), tc.cache)
		}
		if tc.ctype != "" && !strings.HasPrefix(w.Header().Get("Content-Type"), tc.ctype) {
			t.Errorf("%s: Content-Type %q, want %s", name, w.Header().Get("Content-Type"), tc.ctype)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'self';") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: Content-Security-Policy %q", name, csp)
		}
		if w.Header().Get("X-Content-Type-Options") != "nosniff" || w.Header().Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: security headers missing: %v", name, w.Header())
		}
	}
	if w := serve(h, "POST", "/"); w.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("405 without Allow: %v", w.Header())
	}
}

func TestHandlerNotBuilt(t *testing.T) {
	h := newHandler(fstest.MapFS{".gitkeep": {}})
	for _, p := range []string{"/", "/policy", "/assets/x.js", "/.gitkeep"} {
		w := serve(h, "GET", p)
		if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "run <code>make console</code>") {
			t.Errorf("GET %s without a build: %d %q", p, w.Code, w.Body.String())
		}
	}
}

// TestBuiltIndexHasNoInlineScript keeps the build compatible with the CSP:
// every script and stylesheet of the real build is a file under /assets/.
func TestBuiltIndexHasNoInlineScript(t *testing.T) {
	if !Built() {
		t.Skip("console not built (make console): nothing to check")
	}
	w := serve(Handler(), "GET", "/")
	body := w.Body.String()
	scripts := regexp.MustCompile(`<script[^>]*>`).FindAllString(body, -1)
	if len(scripts) == 0 {
		t.Fatalf("built index.html has no script:\n%s", body)
	}
	for _, s := range scripts {
		if !regexp.MustCompile(`src="/assets/[^"]+\.js"`).MatchString(s) {
			t.Errorf("inline or foreign script in index.html: %s", s)
		}
	}
	if strings.Contains(body, "<style") || strings.Contains(body, " style=") {
		t.Errorf("inline style in index.html:\n%s", body)
	}
	for _, ref := range regexp.MustCompile(`(?:src|href)="(/assets/[^"]+)"`).FindAllStringSubmatch(body, -1) {
		if a := serve(Handler(), "GET", ref[1]); a.Code != 200 || a.Header().Get("Cache-Control") != "public, max-age=31536000, immutable" {
			t.Errorf("GET %s: %d, Cache-Control %q", ref[1], a.Code, a.Header().Get("Cache-Control"))
		}
	}
}
