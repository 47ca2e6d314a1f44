package apps

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// ShopperConfig is a customer browsing the shop ("shopper"): each visit
// opens a start page, loads its assets, follows links on the same site,
// sometimes logs in and puts things in the cart.
type ShopperConfig struct {
	Env  `yaml:"-"`
	Pace `yaml:",inline"`
	// URLs are start pages, one picked per visit (http:// or https://).
	URLs []string `json:"urls" yaml:"urls"`
	// Pages is how many links a visit follows; default 4.
	Pages int `json:"pages,omitempty" yaml:"pages"`
	// User and Password log in (POST /login) on some visits.
	User     string `json:"user,omitempty" yaml:"user"`
	Password string `json:"password,omitempty" yaml:"password"`
	// UserAgent; default a desktop browser's.
	UserAgent string `json:"userAgent,omitempty" yaml:"userAgent"`
	// TLS for https URLs; default TLS 1.2-1.3, no verification unless the
	// lab gives its CA.
	TLS ClientTLS `json:"tls" yaml:"tls"`
}

const browserUA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

// SetDefaults paces a visit every 5s.
func (c *ShopperConfig) SetDefaults() {
	c.Pace.setDefaults(5 * time.Second)
	if c.Pages == 0 {
		c.Pages = 4
	}
	if c.UserAgent == "" {
		c.UserAgent = browserUA
	}
}

// Validate checks the configuration.
func (c ShopperConfig) Validate() error {
	errs := []error{c.Pace.validate(), prefixed("tls", c.TLS.validate())}
	if len(c.URLs) == 0 {
		errs = append(errs, fieldErr("urls", "at least one start page"))
	}
	for i, u := range c.URLs {
		errs = append(errs, checkURL(fmt.Sprintf("urls[%d]", i), u, "http", "https"))
	}
	if c.Pages < 0 || c.Pages > 50 {
		errs = append(errs, fieldErr("pages", "%d: want 0-50", c.Pages))
	}
	if (c.User == "") != (c.Password == "") {
		errs = append(errs, fieldErr("password", "user and password go together"))
	}
	return joinNonNil(errs)
}

// Refs returns the start pages.
func (c *ShopperConfig) Refs() []*string {
	refs := make([]*string, len(c.URLs))
	for i := range c.URLs {
		refs[i] = &c.URLs[i]
	}
	return refs
}

// RunShopper makes one visit per round.
func RunShopper(ctx context.Context, cfg ShopperConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("shopper: %w", err)
	}
	log := cfg.log().With("client", "shopper")
	dial := cfg.dialer(cfg.timeout()).DialContext
	return cfg.Pace.loop(ctx, func(ctx context.Context, n int) {
		start := cfg.URLs[rand.IntN(len(cfg.URLs))]
		b, err := newBrowser(&cfg.TLS, start, cfg.UserAgent, cfg.timeout(), dial, log)
		if err != nil {
			failed(ctx, log, "visit", "url", start, "err", err)
			return
		}
		defer b.close()
		// A customer logs in on the first visit, then on every third or so.
		login := n == 1 || rand.IntN(3) == 0
		b.visit(ctx, start, cfg.Pages, login, cfg.User, cfg.Password)
	})
}

// browser is one visit's HTTP client: cookies and keep-alive connections
// live as long as the visit.
type browser struct {
	client *http.Client
	tr     *http.Transport
	ua     string
	log    *slog.Logger
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func newBrowser(ct *ClientTLS, start, ua string, timeout time.Duration, dial dialFunc, log *slog.Logger) (*browser, error) {
	tc, err := ct.config(hostOf(start))
	if err != nil {
		return nil, err
	}
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{
		DialContext:         dial,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: timeout,
		ForceAttemptHTTP2:   tc.MaxVersion >= tls.VersionTLS12,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     10 * time.Second,
	}
	return &browser{
		tr: tr, ua: ua, log: log,
		client: &http.Client{
			Transport: tr, Jar: jar, Timeout: timeout,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 5 {
					return http.ErrUseLastResponse
				}
				return nil
			},
		},
	}, nil
}

func (b *browser) close() { b.tr.CloseIdleConnections() }

var linkRE = regexp.MustCompile(`(href|src)="([^"#]+)"`)

// get fetches u and returns the links (href) and assets (src, stylesheets)
// of the page, on the same host.
func (b *browser) do(ctx context.Context, method, u string, form url.Values) (links, assets []string, err error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("User-Agent", b.ua)
	req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	req.Header.Set("Accept-Language", "en-GB,en;q=0.7")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	start := time.Now()
	resp, err := b.client.Do(req)
	if err != nil {
		failed(ctx, b.log, "http", "method", method, "url", u, "err", err)
		return nil, nil, err
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	attrs := []any{"method", method, "url", u, "status", resp.StatusCode, "proto", resp.Proto,
		"bytes", len(page), "dur", time.Since(start).Round(time.Millisecond).String()}
	if resp.TLS != nil {
		attrs = append(attrs, "tls", TLSVersionName(resp.TLS.Version))
	}
	b.log.Info("http", attrs...)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		return nil, nil, nil
	}
	base := resp.Request.URL
	for _, m := range linkRE.FindAllStringSubmatch(string(page), 100) {
		ref, err := base.Parse(m[2])
		if err != nil || ref.Host != base.Host || ref.Scheme != base.Scheme {
			continue
		}
		if m[1] == "src" || strings.HasSuffix(ref.Path, ".css") {
			assets = append(assets, ref.String())
		} else {
			links = append(links, ref.String())
		}
	}
	return links, assets, nil
}

// visit browses from start: the page and its assets, then pages links.
func (b *browser) visit(ctx context.Context, start string, pages int, login bool, user, pw string) {
	links, assets, err := b.do(ctx, http.MethodGet, start, nil)
	if err != nil {
		return
	}
	for _, a := range assets {
		b.do(ctx, http.MethodGet, a, nil)
	}
	for i := 0; i < pages && len(links) > 0 && ctx.Err() == nil; i++ {
		if !sleep(ctx, time.Duration(100+rand.IntN(400))*time.Millisecond) { // reading time
			return
		}
		next := links[rand.IntN(len(links))]
		if strings.Contains(next, "/logout") {
			continue
		}
		if l, _, err := b.do(ctx, http.MethodGet, next, nil); err == nil && len(l) > 0 {
			links = l
		}
	}
	base, err := url.Parse(start)
	if err != nil {
		return
	}
	if login && user != "" {
		login := base.ResolveReference(&url.URL{Path: "/login"}).String()
		b.do(ctx, http.MethodGet, login, nil)
		b.do(ctx, http.MethodPost, login, url.Values{"user": {user}, "password": {pw}})
	}
	if rand.IntN(4) == 0 {
		cart := base.ResolveReference(&url.URL{Path: "/cart"}).String()
		b.do(ctx, http.MethodPost, cart, url.Values{"product": {fmt.Sprint(1 + rand.IntN(len(catalog)))}})
	}
}

// TLSClientConfig makes HTTPS requests with fixed TLS versions
// ("tls-client"): the legacy client that only speaks TLS 1.0, or a probe
// for any version.
type TLSClientConfig struct {
	Env       `yaml:"-"`
	Pace      `yaml:",inline"`
	ClientTLS `yaml:",inline"`
	// URL to GET, https://...
	URL string `json:"url" yaml:"url"`
	// UserAgent; default an old Windows browser's.
	UserAgent string `json:"userAgent,omitempty" yaml:"userAgent"`
}

// SetDefaults paces a request every 10s.
func (c *TLSClientConfig) SetDefaults() {
	c.Pace.setDefaults(10 * time.Second)
	if c.UserAgent == "" {
		c.UserAgent = "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0)"
	}
}

// Validate checks the configuration.
func (c TLSClientConfig) Validate() error {
	return joinNonNil([]error{c.Pace.validate(), c.ClientTLS.validate(), checkURL("url", c.URL, "https")})
}

// Refs returns the URL.
func (c *TLSClientConfig) Refs() []*string { return []*string{&c.URL} }

// RunTLSClient makes one request per round, each on a new connection.
func RunTLSClient(ctx context.Context, cfg TLSClientConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("tls-client: %w", err)
	}
	log := cfg.log().With("client", "tls-client")
	tc, err := cfg.ClientTLS.config(hostOf(cfg.URL))
	if err != nil {
		return fmt.Errorf("tls-client: %w", err)
	}
	tr := &http.Transport{
		DialContext:         cfg.dialer(cfg.timeout()).DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: cfg.timeout(),
		DisableKeepAlives:   true,
	}
	client := &http.Client{Transport: tr, Timeout: cfg.timeout()}
	return cfg.Pace.loop(ctx, func(ctx context.Context, _ int) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.URL, nil)
		if err != nil {
			failed(ctx, log, "request", "url", cfg.URL, "err", err)
			return
		}
		req.Header.Set("User-Agent", cfg.UserAgent)
		resp, err := client.Do(req)
		if err != nil {
			failed(ctx, log, "request", "url", cfg.URL, "minTLS", TLSVersionName(tc.MinVersion), "maxTLS", TLSVersionName(tc.MaxVersion), "err", err)
			return
		}
		n, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		attrs := []any{"url", cfg.URL, "status", resp.StatusCode, "bytes", n}
		if resp.TLS != nil {
			attrs = append(attrs, "tls", TLSVersionName(resp.TLS.Version), "cipher", tls.CipherSuiteName(resp.TLS.CipherSuite))
		}
		log.Info("request", attrs...)
	})
}
