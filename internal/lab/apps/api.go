package apps

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// APIConfig is the shop's JSON API ("api"): products come from the cache,
// else from the db (then cached); orders go to the db.
//
//	GET  /api/health          {"status":"ok"}
//	GET  /api/products        every product
//	GET  /api/products/{id}   one product (a one-element list)
//	GET  /api/search?q=TEXT   products whose name is LIKE %TEXT%; the text goes
//	                          into the SQL unescaped, as in too many real shops
//	POST /api/orders          {"product":"3","qty":1}
//	GET  /api/stats           cache counters
type APIConfig struct {
	Env `yaml:"-"`
	// Port to listen on; 0 picks a free one. Default 8080.
	Port int `json:"port" yaml:"port"`
	// DB is the database, "HOST:PORT"; empty: the built-in catalog.
	DB         string `json:"db,omitempty" yaml:"db"`
	DBUser     string `json:"dbUser,omitempty" yaml:"dbUser"`
	DBPassword string `json:"dbPassword,omitempty" yaml:"dbPassword"`
	// Cache is the cache, "HOST:PORT"; empty: no caching.
	Cache         string `json:"cache,omitempty" yaml:"cache"`
	CachePassword string `json:"cachePassword,omitempty" yaml:"cachePassword"`
	// H2C also accepts HTTP/2 without TLS (prior knowledge).
	H2C bool `json:"h2c,omitempty" yaml:"h2c"`
}

// SetDefaults fills in port 8080.
func (c *APIConfig) SetDefaults() {
	if c.Port == 0 {
		c.Port = 8080
	}
}

// Validate checks the configuration.
func (c APIConfig) Validate() error {
	errs := []error{checkPort("port", c.Port)}
	if c.DB != "" {
		errs = append(errs, checkHostPort("db", c.DB))
	}
	if c.Cache != "" {
		errs = append(errs, checkHostPort("cache", c.Cache))
	}
	return joinNonNil(errs)
}

// Refs returns the db and cache addresses.
func (c *APIConfig) Refs() []*string {
	var refs []*string
	if c.DB != "" {
		refs = append(refs, &c.DB)
	}
	if c.Cache != "" {
		refs = append(refs, &c.Cache)
	}
	return refs
}

type apiServer struct {
	cfg *APIConfig
	log *slog.Logger
}

// RunAPI serves the JSON API until ctx is cancelled.
func RunAPI(ctx context.Context, cfg APIConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("api: %w", err)
	}
	ln, err := cfg.listen(ctx, cfg.Port)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	log := cfg.log().With("server", "api")
	a := &apiServer{cfg: &cfg, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /api/products", a.products)
	mux.HandleFunc("GET /api/products/{id}", a.product)
	mux.HandleFunc("GET /api/search", a.search)
	mux.HandleFunc("POST /api/orders", a.order)
	mux.HandleFunc("GET /api/stats", a.stats)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(cfg.H2C)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w}
			mux.ServeHTTP(sw, r)
			log.Info("request", "method", r.Method, "uri", r.RequestURI, "proto", r.Proto, "remote", r.RemoteAddr,
				"ua", r.UserAgent(), "status", sw.status, "dur", time.Since(start).Round(time.Microsecond).String())
		}),
		Protocols:         &protos,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	log.Info("listening", "addr", ln.Addr().String(), "db", cfg.DB, "cache", cfg.Cache)
	return serveHTTP(ctx, srv, func() error { return srv.Serve(ln) })
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

const backendTimeout = 3 * time.Second

// cached returns the cached value of key, or calls load and caches it.
func (a *apiServer) cached(ctx context.Context, key string, load func() ([]Product, error)) ([]Product, error) {
	var cc *cacheConn
	if a.cfg.Cache != "" {
		var err error
		cc, err = dialCache(ctx, &a.cfg.Env, a.cfg.Cache, a.cfg.CachePassword, backendTimeout)
		if err != nil {
			failed(ctx, a.log, "cache", "addr", a.cfg.Cache, "err", err)
		} else {
			defer cc.close()
			if rep, err := cc.do("GET", key); err == nil && rep.Kind == '$' && !rep.Nil {
				var ps []Product
				if json.Unmarshal([]byte(rep.Str), &ps) == nil {
					return ps, nil
				}
			}
		}
	}
	ps, err := load()
	if err != nil {
		return nil, err
	}
	if cc != nil {
		b, _ := json.Marshal(ps)
		cc.do("SET", key, string(b), "EX", "30")
	}
	return ps, nil
}

// query runs sql on the db and turns rows into products.
func (a *apiServer) query(ctx context.Context, sql string) ([]Product, error) {
	if a.cfg.DB == "" {
		return nil, fmt.Errorf("no db")
	}
	d, err := dialDB(ctx, &a.cfg.Env, a.cfg.DB, a.cfg.DBUser, a.cfg.DBPassword, backendTimeout)
	if err != nil {
		return nil, err
	}
	defer d.close()
	cols, rows, err := d.query(sql)
	if err != nil {
		return nil, err
	}
	ps := make([]Product, 0, len(rows))
	for _, row := range rows {
		var p Product
		for i, c := range cols {
			if i >= len(row) {
				break
			}
			switch c {
			case "id":
				p.ID, _ = strconv.Atoi(row[i])
			case "name":
				p.Name = row[i]
			case "price":
				p.Price, _ = strconv.ParseFloat(row[i], 64)
			case "stock":
				p.Stock, _ = strconv.Atoi(row[i])
			}
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func (a *apiServer) products(w http.ResponseWriter, r *http.Request) {
	if a.cfg.DB == "" {
		writeJSON(w, http.StatusOK, catalog)
		return
	}
	ps, err := a.cached(r.Context(), "products:all", func() ([]Product, error) {
		return a.query(r.Context(), "SELECT id, name, price, stock FROM products")
	})
	if err != nil {
		a.fail(w, "products", err)
		return
	}
	writeJSON(w, http.StatusOK, ps)
}

func (a *apiServer) product(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := strconv.Atoi(id); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "id must be a number"})
		return
	}
	if a.cfg.DB == "" {
		writeJSON(w, http.StatusOK, localCatalog("/api/products/"+id))
		return
	}
	ps, err := a.cached(r.Context(), "product:"+id, func() ([]Product, error) {
		return a.query(r.Context(), "SELECT id, name, price, stock FROM products WHERE id = "+id)
	})
	if err != nil {
		a.fail(w, "product", err)
		return
	}
	if len(ps) == 0 {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such product"})
		return
	}
	writeJSON(w, http.StatusOK, ps)
}

func (a *apiServer) search(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("q")
	if a.cfg.DB == "" {
		writeJSON(w, http.StatusOK, localCatalog("/api/search?q="+q))
		return
	}
	// Deliberately unescaped: the attacker's injections travel to the db.
	ps, err := a.query(r.Context(), "SELECT id, name, price FROM products WHERE name LIKE '%"+q+"%'")
	if err != nil {
		a.fail(w, "search", err)
		return
	}
	writeJSON(w, http.StatusOK, ps)
}

func (a *apiServer) order(w http.ResponseWriter, r *http.Request) {
	var o struct {
		Product string `json:"product"`
		Qty     int    `json:"qty"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&o); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	if _, err := strconv.Atoi(o.Product); err != nil || o.Qty < 1 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "product must be a number, qty positive"})
		return
	}
	if a.cfg.DB != "" {
		if _, err := a.query(r.Context(), fmt.Sprintf("INSERT INTO orders (product, qty) VALUES (%s, %d)", o.Product, o.Qty)); err != nil {
			a.fail(w, "order", err)
			return
		}
	}
	if a.cfg.Cache != "" {
		if cc, err := dialCache(r.Context(), &a.cfg.Env, a.cfg.Cache, a.cfg.CachePassword, backendTimeout); err == nil {
			cc.do("INCR", "orders:count")
			cc.close()
		}
	}
	writeJSON(w, http.StatusCreated, map[string]any{"status": "created", "product": o.Product, "qty": o.Qty})
}

func (a *apiServer) stats(w http.ResponseWriter, r *http.Request) {
	out := map[string]string{}
	if a.cfg.Cache != "" {
		cc, err := dialCache(r.Context(), &a.cfg.Env, a.cfg.Cache, a.cfg.CachePassword, backendTimeout)
		if err != nil {
			a.fail(w, "stats", err)
			return
		}
		defer cc.close()
		for _, k := range []string{"orders:count", "hits"} {
			if rep, err := cc.do("GET", k); err == nil && !rep.Nil {
				out[k] = rep.Str
			}
		}
		if rep, err := cc.do("DBSIZE"); err == nil {
			out["keys"] = strconv.FormatInt(rep.Int, 10)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *apiServer) fail(w http.ResponseWriter, what string, err error) {
	a.log.Warn("backend", "what", what, "err", err)
	status := http.StatusBadGateway
	if strings.HasPrefix(err.Error(), "db: ") {
		status = http.StatusInternalServerError
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

// APICallerConfig calls the JSON API ("api-caller"): a partner system or a
// mobile backend.
type APICallerConfig struct {
	Env  `yaml:"-"`
	Pace `yaml:",inline"`
	// Base is the API's base URL, e.g. "http://api1:8080".
	Base string `json:"base" yaml:"base"`
	// Paths to call, one picked at random per round; default a mix of
	// reads and an order.
	Paths []string `json:"paths,omitempty" yaml:"paths"`
	// H2C speaks HTTP/2 without TLS (prior knowledge) instead of HTTP/1.1.
	H2C bool `json:"h2c,omitempty" yaml:"h2c"`
	// UserAgent sent; default "shop-partner/2.3".
	UserAgent string `json:"userAgent,omitempty" yaml:"userAgent"`
}

// SetDefaults paces a call every 2s.
func (c *APICallerConfig) SetDefaults() {
	c.Pace.setDefaults(2 * time.Second)
	if len(c.Paths) == 0 {
		c.Paths = []string{"/api/health", "/api/products", "/api/products/1", "/api/products/4", "/api/search?q=mug", "POST /api/orders", "/api/stats"}
	}
	if c.UserAgent == "" {
		c.UserAgent = "shop-partner/2.3"
	}
}

// Validate checks the configuration.
func (c APICallerConfig) Validate() error {
	errs := []error{c.Pace.validate(), checkURL("base", c.Base, "http")}
	if len(c.Paths) == 0 {
		errs = append(errs, fieldErr("paths", "at least one path"))
	}
	for i, p := range c.Paths {
		if _, path, _ := strings.Cut(p, " "); !strings.HasPrefix(p, "/") && !strings.HasPrefix(path, "/") {
			errs = append(errs, fieldErr(fmt.Sprintf("paths[%d]", i), "%q: want /PATH or \"POST /PATH\"", p))
		}
	}
	return joinNonNil(errs)
}

// Refs returns the base URL.
func (c *APICallerConfig) Refs() []*string { return []*string{&c.Base} }

// RunAPICaller calls one path per round.
func RunAPICaller(ctx context.Context, cfg APICallerConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("api-caller: %w", err)
	}
	log := cfg.log().With("client", "api-caller")
	tr := &http.Transport{DialContext: cfg.dialer(cfg.timeout()).DialContext, MaxIdleConns: 2, IdleConnTimeout: 30 * time.Second}
	var protos http.Protocols
	if cfg.H2C {
		protos.SetUnencryptedHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	tr.Protocols = &protos
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: cfg.timeout()}
	base := strings.TrimSuffix(cfg.Base, "/")
	return cfg.Pace.loop(ctx, func(ctx context.Context, _ int) {
		p := cfg.Paths[rand.IntN(len(cfg.Paths))]
		method, path := http.MethodGet, p
		var body io.Reader
		if m, rest, ok := strings.Cut(p, " "); ok {
			method, path = m, rest
			body = strings.NewReader(fmt.Sprintf(`{"product":"%d","qty":%d}`, 1+rand.IntN(len(catalog)), 1+rand.IntN(3)))
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, body)
		if err != nil {
			failed(ctx, log, "request", "url", base+path, "err", err)
			return
		}
		req.Header.Set("User-Agent", cfg.UserAgent)
		req.Header.Set("Accept", "application/json")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			failed(ctx, log, "request", "method", method, "url", base+path, "err", err)
			return
		}
		n, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		log.Info("request", "method", method, "url", base+path, "proto", resp.Proto, "status", resp.StatusCode, "bytes", n)
	})
}

// checkURL validates a URL with one of schemes and a host.
func checkURL(field, s string, schemes ...string) error {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || rest == "" {
		return fieldErr(field, "%q: want a URL such as %s://HOST[:PORT]/", s, schemes[0])
	}
	if !containsFold(schemes, scheme) {
		return fieldErr(field, "%q: scheme must be %s", s, strings.Join(schemes, " or "))
	}
	host := hostOf(s)
	if host == "" {
		return fieldErr(field, "%q: no host", s)
	}
	auth := rest
	if i := strings.IndexAny(auth, "/?#"); i >= 0 {
		auth = auth[:i]
	}
	if strings.Contains(auth, "@") {
		return fieldErr(field, "%q: no user info in lab URLs", s)
	}
	if _, port, err := net.SplitHostPort(auth); err == nil {
		if n, err := parsePort(port); err != nil || n == 0 {
			return fieldErr(field, "%q: bad port", s)
		}
	}
	return nil
}
