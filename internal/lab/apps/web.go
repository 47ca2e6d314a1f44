package apps

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// HTTPConfig is the shop web site over plain HTTP ("http").
type HTTPConfig struct {
	Env `yaml:"-"`
	// Port to listen on; 0 picks a free one. Default 80.
	Port int `json:"port" yaml:"port"`
	// Site is the shop's name on its pages.
	Site string `json:"site,omitempty" yaml:"site"`
	// API is the API tier ("HOST:PORT"): the site reads products from it and
	// proxies /api/ to it. Empty: a built-in catalog, no /api/.
	API string `json:"api,omitempty" yaml:"api"`
	// Directory checks /login passwords with an LDAP bind. Empty: Users.
	Directory *DirectoryLogin `json:"directory,omitempty" yaml:"directory"`
	// Users are local logins (name: password) when there is no Directory.
	Users map[string]string `json:"users,omitempty" yaml:"users"`
	// H2C also accepts HTTP/2 without TLS (prior knowledge).
	H2C bool `json:"h2c,omitempty" yaml:"h2c"`
}

// DirectoryLogin says how the web tier checks passwords against LDAP.
type DirectoryLogin struct {
	Server string `json:"server" yaml:"server"` // HOST:PORT of the directory
	// UserDN is the bind DN with %s for the user name,
	// e.g. "uid=%s,ou=people,dc=lab,dc=test".
	UserDN string `json:"userDN" yaml:"userDN"`
}

// SetDefaults fills in port 80 and a site name.
func (c *HTTPConfig) SetDefaults() {
	if c.Port == 0 {
		c.Port = 80
	}
	if c.Site == "" {
		c.Site = "Bulkhead Shop"
	}
}

// Validate checks the configuration.
func (c HTTPConfig) Validate() error {
	var errs []error
	if err := checkPort("port", c.Port); err != nil {
		errs = append(errs, err)
	}
	if c.API != "" {
		if err := checkHostPort("api", c.API); err != nil {
			errs = append(errs, err)
		}
	}
	if d := c.Directory; d != nil {
		if err := checkHostPort("directory.server", d.Server); err != nil {
			errs = append(errs, err)
		}
		if strings.Count(d.UserDN, "%s") != 1 {
			errs = append(errs, fieldErr("directory.userDN", "%q: want exactly one %%s for the user name", d.UserDN))
		}
	}
	return joinErrs(errs)
}

// Refs returns the API and directory addresses.
func (c *HTTPConfig) Refs() []*string {
	refs := []*string{}
	if c.API != "" {
		refs = append(refs, &c.API)
	}
	if c.Directory != nil {
		refs = append(refs, &c.Directory.Server)
	}
	return refs
}

// HTTPSConfig is the shop web site over TLS ("https").
type HTTPSConfig struct {
	HTTPConfig `yaml:",inline"`
	// MinTLS and MaxTLS bound the versions accepted; defaults 1.2 and 1.3.
	// "1.0" is possible: a legacy endpoint.
	TLSRange `yaml:",inline"`
	// KeyType of the server certificate: "ecdsa" (default) or "rsa".
	KeyType string `json:"keyType,omitempty" yaml:"keyType"`
	// Names go into the certificate (DNS names or IPs).
	Names []string `json:"names,omitempty" yaml:"names"`
	// CACertPEM and CAKeyPEM are the lab CA that issues the certificate;
	// empty: a CA made at start and kept in memory.
	CACertPEM string `json:"caCertPEM,omitempty" yaml:"-"`
	CAKeyPEM  string `json:"caKeyPEM,omitempty" yaml:"-"`
}

// SetDefaults fills in port 443 and TLS 1.2-1.3.
func (c *HTTPSConfig) SetDefaults() {
	if c.Port == 0 {
		c.Port = 443
	}
	c.HTTPConfig.SetDefaults()
	if c.MinTLS == "" {
		c.MinTLS = "1.2"
	}
	if c.MaxTLS == "" {
		c.MaxTLS = "1.3"
	}
	if c.KeyType == "" {
		c.KeyType = "ecdsa"
	}
}

// Validate checks the configuration.
func (c HTTPSConfig) Validate() error {
	errs := []error{c.HTTPConfig.Validate()}
	_, _, err := c.versions(tls.VersionTLS12, tls.VersionTLS13)
	errs = append(errs, err)
	if c.KeyType != "" && c.KeyType != "ecdsa" && c.KeyType != "rsa" {
		errs = append(errs, fieldErr("keyType", "%q: want ecdsa or rsa", c.KeyType))
	}
	if c.H2C {
		errs = append(errs, fieldErr("h2c", "cleartext HTTP/2 makes no sense over TLS"))
	}
	if (c.CACertPEM == "") != (c.CAKeyPEM == "") {
		errs = append(errs, fieldErr("caKeyPEM", "caCertPEM and caKeyPEM go together"))
	}
	return joinNonNil(errs)
}

func joinNonNil(errs []error) error {
	var out []error
	for _, e := range errs {
		if e != nil {
			out = append(out, unjoin(e)...)
		}
	}
	return joinErrs(out)
}

// RunHTTP serves the shop over plain HTTP until ctx is cancelled.
func RunHTTP(ctx context.Context, cfg HTTPConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("http: %w", err)
	}
	ln, err := cfg.listen(ctx, cfg.Port)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	log := cfg.log().With("server", "http")
	srv := newShopServer(&cfg, log)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(cfg.H2C)
	srv.Protocols = &protos
	log.Info("listening", "addr", ln.Addr().String(), "h2c", cfg.H2C)
	return serveHTTP(ctx, srv, func() error { return srv.Serve(ln) })
}

// RunHTTPS serves the shop over TLS until ctx is cancelled.
func RunHTTPS(ctx context.Context, cfg HTTPSConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("https: %w", err)
	}
	tc, err := cfg.tlsConfig()
	if err != nil {
		return fmt.Errorf("https: %w", err)
	}
	ln, err := cfg.listen(ctx, cfg.Port)
	if err != nil {
		return fmt.Errorf("https: %w", err)
	}
	log := cfg.log().With("server", "https")
	srv := newShopServer(&cfg.HTTPConfig, log)
	srv.TLSConfig = tc
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(tc.MaxVersion >= tls.VersionTLS12 && tc.MinVersion >= tls.VersionTLS12)
	srv.Protocols = &protos
	// Log every handshake: the version and cipher each client got is what
	// the DPI tests look for.
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		log.Info("tls handshake", "version", TLSVersionName(cs.Version),
			"cipher", tls.CipherSuiteName(cs.CipherSuite), "sni", cs.ServerName, "alpn", cs.NegotiatedProtocol)
		return nil
	}
	log.Info("listening", "addr", ln.Addr().String(), "minTLS", TLSVersionName(tc.MinVersion), "maxTLS", TLSVersionName(tc.MaxVersion))
	return serveHTTP(ctx, srv, func() error { return srv.ServeTLS(ln, "", "") })
}

func (c *HTTPSConfig) tlsConfig() (*tls.Config, error) {
	lo, hi, err := c.versions(tls.VersionTLS12, tls.VersionTLS13)
	if err != nil {
		return nil, err
	}
	var ca *CA
	if c.CACertPEM != "" {
		ca, err = ParseCA([]byte(c.CACertPEM), []byte(c.CAKeyPEM))
	} else {
		ca, err = NewCA("Bulkhead lab CA (ephemeral)")
	}
	if err != nil {
		return nil, err
	}
	names := c.Names
	if len(names) == 0 {
		names = []string{"localhost", "127.0.0.1", "::1"}
	}
	cert, err := ca.Issue(c.KeyType, names...)
	if err != nil {
		return nil, fmt.Errorf("issue certificate: %w", err)
	}
	tc := &tls.Config{MinVersion: lo, MaxVersion: hi, Certificates: []tls.Certificate{cert}}
	if lo < tls.VersionTLS12 {
		// A legacy endpoint also takes the RSA key exchange suites that
		// Go leaves out by default.
		tc.CipherSuites = legacySuites
	}
	return tc, nil
}

// serveHTTP runs serve until ctx is cancelled, then shuts srv down.
func serveHTTP(ctx context.Context, srv *http.Server, serve func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// shop is the web site's handler.
type shop struct {
	cfg      *HTTPConfig
	log      *slog.Logger
	api      *http.Client
	mu       sync.Mutex
	sessions map[string]string // cookie -> user
}

func newShopServer(cfg *HTTPConfig, log *slog.Logger) *http.Server {
	s := &shop{cfg: cfg, log: log, sessions: map[string]string{}}
	s.api = &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext:       cfg.dialer(3 * time.Second).DialContext,
			DisableKeepAlives: true,
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /products", s.products)
	mux.HandleFunc("GET /product", s.product)
	mux.HandleFunc("GET /search", s.search)
	mux.HandleFunc("GET /about", s.static("About us", "We sell mugs, teapots and other things that hold hot water. <a href=\"/contact\">Contact</a>."))
	mux.HandleFunc("GET /contact", s.static("Contact", "Write to shop@lab.test. <a href=\"/\">Home</a>."))
	mux.HandleFunc("GET /login", s.loginForm)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("GET /logout", s.logout)
	mux.HandleFunc("GET /account", s.account)
	mux.HandleFunc("POST /cart", s.cart)
	mux.HandleFunc("GET /static/{file}", s.asset)
	mux.HandleFunc("GET /robots.txt", s.asset)
	mux.HandleFunc("GET /favicon.ico", s.asset)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	if cfg.API != "" {
		target := &url.URL{Scheme: "http", Host: cfg.API}
		rp := httputil.NewSingleHostReverseProxy(target)
		rp.Transport = s.api.Transport
		rp.ErrorLog = nil
		mux.Handle("/api/", rp)
	}
	return &http.Server{
		Handler:           s.logged(mux),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

// logged logs one line per request, with the raw request line so that
// exploit payloads are visible as they arrived.
func (s *shop) logged(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		w.Header().Set("Server", "bulkhead-lab-shop/1.0")
		h.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		s.log.Info("request", "method", r.Method, "uri", r.RequestURI, "host", r.Host, "proto", r.Proto,
			"remote", r.RemoteAddr, "ua", r.UserAgent(), "status", sw.status, "bytes", sw.bytes,
			"dur", time.Since(start).Round(time.Microsecond).String())
	})
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} - {{.Site}}</title>
<link rel="stylesheet" href="/static/style.css"><script src="/static/app.js"></script></head>
<body><header><img src="/static/logo.svg" alt="logo"> <a href="/">{{.Site}}</a>
 | <a href="/products">Products</a> | <a href="/search?q=mug">Mugs</a> | <a href="/about">About</a>
 | {{if .User}}<a href="/account">{{.User}}</a> <a href="/logout">Log out</a>{{else}}<a href="/login">Log in</a>{{end}}</header>
<main><h1>{{.Title}}</h1>
{{if .Products}}<ul>{{range .Products}}<li><a href="/product?id={{.ID}}">{{.Name}}</a> {{.Price}}
<form method="post" action="/cart"><input type="hidden" name="product" value="{{.ID}}"><button>Add to cart</button></form></li>{{end}}</ul>{{end}}
{{.Body}}</main><footer><a href="/contact">Contact</a></footer></body></html>
`))

type pageData struct {
	Site, Title, User string
	Body              template.HTML
	Products          []Product
}

func (s *shop) render(w http.ResponseWriter, r *http.Request, status int, d pageData) {
	d.Site = s.cfg.Site
	if d.Site == "" {
		d.Site = "Bulkhead Shop"
	}
	d.User = s.user(r)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := page.Execute(w, d); err != nil {
		s.log.Debug("render", "err", err)
	}
}

func (s *shop) static(title, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.render(w, r, http.StatusOK, pageData{Title: title, Body: template.HTML(body)})
	}
}

func (s *shop) index(w http.ResponseWriter, r *http.Request) {
	ps, _ := s.catalog(r.Context(), "/api/products")
	if len(ps) > 4 {
		ps = ps[:4]
	}
	s.render(w, r, http.StatusOK, pageData{Title: "Welcome", Products: ps,
		Body: `<p>Hot drinks need good mugs. <a href="/products">See everything</a>.</p>`})
}

func (s *shop) products(w http.ResponseWriter, r *http.Request) {
	ps, err := s.catalog(r.Context(), "/api/products")
	if err != nil {
		s.render(w, r, http.StatusBadGateway, pageData{Title: "Sorry", Body: "The catalog is not available."})
		return
	}
	s.render(w, r, http.StatusOK, pageData{Title: "Products", Products: ps})
}

func (s *shop) product(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	ps, err := s.catalog(r.Context(), "/api/products/"+url.PathEscape(id))
	if err != nil || len(ps) == 0 {
		s.render(w, r, http.StatusNotFound, pageData{Title: "Not found", Body: "No such product."})
		return
	}
	s.render(w, r, http.StatusOK, pageData{Title: ps[0].Name, Products: ps})
}

func (s *shop) search(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("q")
	ps, err := s.catalog(r.Context(), "/api/search?q="+url.QueryEscape(q))
	if err != nil {
		s.render(w, r, http.StatusBadGateway, pageData{Title: "Search", Body: "Search is not available."})
		return
	}
	s.render(w, r, http.StatusOK, pageData{Title: "Search: " + q, Products: ps})
}

// catalog asks the API tier for products; without one, the built-in list.
func (s *shop) catalog(ctx context.Context, path string) ([]Product, error) {
	if s.cfg.API == "" {
		return localCatalog(path), nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.cfg.API+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.api.Do(req)
	if err != nil {
		failed(ctx, s.log, "api call", "path", path, "err", err)
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return nil, fmt.Errorf("api %s: %s", path, resp.Status)
	}
	var ps []Product
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ps); err != nil {
		return nil, err
	}
	return ps, nil
}

func localCatalog(path string) []Product {
	if id, ok := strings.CutPrefix(path, "/api/products/"); ok {
		for _, p := range catalog {
			if fmt.Sprint(p.ID) == id {
				return []Product{p}
			}
		}
		return nil
	}
	if q, ok := strings.CutPrefix(path, "/api/search?q="); ok {
		q, _ = url.QueryUnescape(q)
		var out []Product
		for _, p := range catalog {
			if strings.Contains(strings.ToLower(p.Name), strings.ToLower(q)) {
				out = append(out, p)
			}
		}
		return out
	}
	return catalog
}

func (s *shop) user(r *http.Request) string {
	c, err := r.Cookie("session")
	if err != nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[c.Value]
}

func (s *shop) loginForm(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, pageData{Title: "Log in", Body: `<form method="post" action="/login">
<label>User <input name="user"></label> <label>Password <input type="password" name="password"></label>
<button>Log in</button></form>`})
}

func (s *shop) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<16)
	user, pw := r.PostFormValue("user"), r.PostFormValue("password")
	ok, how := s.checkPassword(r.Context(), user, pw)
	s.log.Info("login", "user", user, "ok", ok, "via", how, "remote", r.RemoteAddr)
	if !ok {
		s.render(w, r, http.StatusUnauthorized, pageData{Title: "Log in", Body: "Wrong user or password. <a href=\"/login\">Try again</a>."})
		return
	}
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	s.mu.Lock()
	if len(s.sessions) > 10000 {
		clear(s.sessions)
	}
	s.sessions[id] = user
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "session", Value: id, Path: "/", HttpOnly: true})
	http.Redirect(w, r, "/account", http.StatusSeeOther)
}

func (s *shop) checkPassword(ctx context.Context, user, pw string) (bool, string) {
	if user == "" || pw == "" {
		return false, "empty"
	}
	if d := s.cfg.Directory; d != nil {
		err := ldapBind(ctx, &s.cfg.Env, d.Server, fmt.Sprintf(d.UserDN, ldap.EscapeDN(user)), pw, 3*time.Second)
		if err != nil {
			s.log.Debug("directory bind", "user", user, "err", err)
		}
		return err == nil, "ldap"
	}
	want, ok := s.cfg.Users[user]
	return ok && want == pw, "local"
}

// ldapBind binds to the directory at addr as dn.
func ldapBind(ctx context.Context, env *Env, addr, dn, pw string, timeout time.Duration) error {
	c, err := env.dialer(timeout).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return ldapBindConn(c, dn, pw, timeout)
}

// ldapBindConn binds as dn over c, unbinds and closes c.
func ldapBindConn(c net.Conn, dn, pw string, timeout time.Duration) error {
	l := ldap.NewConn(c, false)
	l.Start()
	defer l.Close()
	l.SetTimeout(timeout)
	if err := l.Bind(dn, pw); err != nil {
		return err
	}
	return l.Unbind()
}

func (s *shop) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie("session"); err == nil {
		s.mu.Lock()
		delete(s.sessions, c.Value)
		s.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: "session", Value: "", Path: "/", MaxAge: -1})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *shop) account(w http.ResponseWriter, r *http.Request) {
	u := s.user(r)
	if u == "" {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, pageData{Title: "Your account", Body: template.HTML("<p>Logged in as " + template.HTMLEscapeString(u) + ". No orders yet.</p>")})
}

func (s *shop) cart(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<16)
	product := r.PostFormValue("product")
	if s.cfg.API != "" {
		body := fmt.Sprintf(`{"product":%q,"qty":1}`, product)
		req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, "http://"+s.cfg.API+"/api/orders", strings.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
			var resp *http.Response
			if resp, err = s.api.Do(req); err == nil {
				io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
				resp.Body.Close()
			}
		}
		if err != nil {
			failed(r.Context(), s.log, "api call", "path", "/api/orders", "err", err)
		}
	}
	http.Redirect(w, r, "/products", http.StatusSeeOther)
}

var assets = map[string]struct{ typ, body string }{
	"style.css":   {"text/css", "body{font-family:sans-serif;margin:2em}header a{margin-right:.5em}li{margin:.3em 0}\n"},
	"app.js":      {"application/javascript", "document.addEventListener('DOMContentLoaded',function(){console.log('shop ready')});\n"},
	"logo.svg":    {"image/svg+xml", `<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32"><circle cx="16" cy="16" r="14" fill="#c63"/></svg>` + "\n"},
	"robots.txt":  {"text/plain", "User-agent: *\nDisallow: /account\n"},
	"favicon.ico": {"image/x-icon", "\x00\x00\x01\x00"},
}

func (s *shop) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if name == "" {
		name = strings.TrimPrefix(r.URL.Path, "/")
	}
	a, ok := assets[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", a.typ)
	w.Header().Set("Cache-Control", "max-age=60")
	io.WriteString(w, a.body)
}
