package apps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Config is what every application's configuration satisfies: it carries an
// Env (embedded) and validates itself.
type Config interface {
	Validate() error
	environment() *Env
}

// Defaulter is implemented by configurations that fill in standard values
// (well-known ports, pacing) for fields a scenario left out. Run does not
// call it: a zero port means "any free port", which tests rely on.
type Defaulter interface {
	SetDefaults()
}

// Referrer is implemented by configurations that name other endpoints. Refs
// returns pointers to every field that holds a host: "HOST", "HOST:PORT" or a
// URL "scheme://HOST[:PORT]/...". A scenario checks the hosts and rewrites
// workload names into addresses through these pointers.
type Referrer interface {
	Refs() []*string
}

// Env is what the lab sets for every application besides its own settings.
// It is embedded in every configuration; scenarios never write it (YAML
// ignores it), the lab fills it in the JSON it passes to Main.
type Env struct {
	// Allow lists the only prefixes the application may connect to. Empty
	// means loopback only, so that an application started by mistake
	// outside the lab cannot reach anything else.
	Allow []netip.Prefix `json:"allow,omitempty" yaml:"-"`
	// Resolver is the lab DNS server ("IP:PORT") that clients use for names.
	// Empty means names cannot be resolved (addresses only).
	Resolver string `json:"resolver,omitempty" yaml:"-"`
	// Bind is the address servers listen on; empty means every address.
	Bind string `json:"bind,omitempty" yaml:"-"`

	// Log receives one line per action; nil means slog.Default().
	Log *slog.Logger `json:"-" yaml:"-"`
	// Ready, if set, is called with each listener's address once it accepts
	// connections (tests use it to learn a port chosen by the kernel).
	Ready func(network string, addr net.Addr) `json:"-" yaml:"-"`
}

func (e *Env) environment() *Env { return e }

// EnvOf returns the Env embedded in c, for the lab to fill in.
func EnvOf(c Config) *Env { return c.environment() }

func (e *Env) log() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.Default()
}

func (e *Env) ready(network string, a net.Addr) {
	if e.Ready != nil {
		e.Ready(network, a)
	}
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// allowed reports whether the application may connect to a.
func (e *Env) allowed(a netip.Addr) bool {
	a = a.Unmap()
	allow := e.Allow
	if len(allow) == 0 {
		allow = loopback
	}
	for _, p := range allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ErrNotAllowed is returned (wrapped) when an application tries to connect
// to an address outside its Env.Allow.
var ErrNotAllowed = errors.New("address not in the lab")

// dialer returns a dialer that refuses, before connecting, every address
// outside Allow, whatever a name resolved to; and resolves names through
// the lab DNS server only.
func (e *Env) dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{
		Timeout:  timeout,
		Resolver: e.resolver(),
		Control:  e.control,
	}
}

func (e *Env) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%s %s: %w", network, address, err)
	}
	if !e.allowed(ap.Addr()) {
		return fmt.Errorf("%s %s: %w", network, address, ErrNotAllowed)
	}
	return nil
}

// resolver sends every query to the lab DNS server (and nowhere else).
func (e *Env) resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			if e.Resolver == "" {
				return nil, errors.New("no lab resolver configured")
			}
			d := &net.Dialer{Timeout: 3 * time.Second, Control: e.control}
			return d.DialContext(ctx, network, e.Resolver)
		},
	}
}

// App describes one application for Main and for the CLI's help.
type App struct {
	Name   string
	Server bool // listens (true) or only connects (false)
	Doc    string
	new    func() Config
	run    func(context.Context, Config) error
}

// NewConfig returns a zero configuration of the app, to decode into.
func (a App) NewConfig() Config { return a.new() }

// Run runs the app with cfg, which must come from a.NewConfig.
func (a App) Run(ctx context.Context, cfg Config) error { return a.run(ctx, cfg) }

func app[C any, P interface {
	*C
	Config
}](name string, server bool, doc string, run func(context.Context, C) error) App {
	return App{
		Name: name, Server: server, Doc: doc,
		new: func() Config { return P(new(C)) },
		run: func(ctx context.Context, c Config) error { return run(ctx, *c.(P)) },
	}
}

var registry = map[string]App{}

func init() {
	for _, a := range []App{
		app("http", true, "the shop web site over plain HTTP", RunHTTP),
		app("https", true, "the shop web site over TLS, versions from config", RunHTTPS),
		app("api", true, "the shop's JSON API; calls the db and the cache", RunAPI),
		app("db", true, "a SQL-like line protocol over TCP", RunDB),
		app("cache", true, "a Redis-like (RESP) key-value cache", RunCache),
		app("dns", true, "an authoritative DNS server (UDP and TCP) for the lab zones", RunDNS),
		app("ssh", true, "an SSH server with password logins and a trivial shell", RunSSH),
		app("ldap", true, "a small LDAPv3 directory: bind, search", RunLDAP),
		app("shopper", false, "browses the web site, follows links, logs in", RunShopper),
		app("api-caller", false, "calls the JSON API, HTTP/1.1 or cleartext HTTP/2", RunAPICaller),
		app("tls-client", false, "HTTPS requests with fixed TLS versions (the legacy client)", RunTLSClient),
		app("ssh-admin", false, "logs into hosts over SSH and runs commands", RunSSHAdmin),
		app("rdsh", false, "several users on one host, each from its own source port range", RunRDSH),
		app("dns-client", false, "looks names up (A, AAAA, CNAME, TXT; UDP and TCP)", RunDNSClient),
		app("db-client", false, "runs queries against the db", RunDBClient),
		app("cache-client", false, "reads and writes the cache", RunCacheClient),
		app("ldap-client", false, "binds to the directory and searches it", RunLDAPClient),
		app("attacker", false, "scans ports, guesses SSH passwords, sends exploit payloads", RunAttacker),
	} {
		registry[a.Name] = a
	}
}

// Names returns the names of every application, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Lookup returns the application called name.
func Lookup(name string) (App, bool) {
	a, ok := registry[name]
	return a, ok
}

// Decode decodes the JSON configuration of the app called name, strictly:
// unknown fields and trailing data are errors. It does not validate.
func Decode(name string, cfgJSON []byte) (Config, error) {
	a, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("lab app: unknown application %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	cfg := a.new()
	if len(bytes.TrimSpace(cfgJSON)) == 0 {
		cfgJSON = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(cfgJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return nil, fmt.Errorf("lab app %s: config: %w", name, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("lab app %s: config: data after the JSON object", name)
	}
	return cfg, nil
}

// Main runs the application called name with its JSON configuration until
// ctx is cancelled. It logs through slog.Default, with app=name.
func Main(ctx context.Context, name string, cfgJSON []byte) error {
	cfg, err := Decode(name, cfgJSON)
	if err != nil {
		return err
	}
	env := cfg.environment()
	if env.Log == nil {
		env.Log = slog.Default().With("app", name)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("lab app %s: config: %w", name, err)
	}
	return registry[name].run(ctx, cfg)
}

// FieldError is a configuration error in one field; Field is a path such as
// "zones[0].records[2].a[0]" relative to the application's configuration.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Err.Error()
	}
	return e.Field + ": " + e.Err.Error()
}

func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// prefixed puts parent in front of the field path of every FieldError in err
// (as returned by errors.Join of FieldErrors, or a single one).
func prefixed(parent string, err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range unjoin(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			f := parent
			if fe.Field != "" {
				if strings.HasPrefix(fe.Field, "[") {
					f += fe.Field
				} else {
					f += "." + fe.Field
				}
			}
			out = append(out, &FieldError{Field: f, Err: fe.Err})
		} else {
			out = append(out, &FieldError{Field: parent, Err: e})
		}
	}
	return joinErrs(out)
}

// unjoin undoes errors.Join, recursively.
func unjoin(err error) []error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, unjoin(e)...)
	}
	return out
}

// FieldErrors flattens err into its FieldErrors; an error that is not one
// becomes a FieldError with no field.
func FieldErrors(err error) []*FieldError {
	if err == nil {
		return nil
	}
	var out []*FieldError
	for _, e := range unjoin(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			out = append(out, fe)
		} else {
			out = append(out, &FieldError{Err: e})
		}
	}
	return out
}

// checkPort validates a server port: 0 means any free port.
func checkPort(field string, p int) error {
	if p < 0 || p > 65535 {
		return fieldErr(field, "port %d out of range 0-65535", p)
	}
	return nil
}

// checkHostPort validates "HOST:PORT" with a port 1-65535.
func checkHostPort(field, s string) error {
	if s == "" {
		return fieldErr(field, "missing (want HOST:PORT)")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return fieldErr(field, "%q: want HOST:PORT", s)
	}
	if n, err := parsePort(port); err != nil || n == 0 {
		return fieldErr(field, "%q: bad port", s)
	}
	return nil
}

func parsePort(s string) (int, error) {
	var n int
	if s == "" || len(s) > 5 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad port %q", s)
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return 0, fmt.Errorf("port %d out of range", n)
	}
	return n, nil
}

// listenAddr is the address a server binds: Env.Bind and port.
func (e *Env) listenAddr(port int) string {
	return net.JoinHostPort(e.Bind, fmt.Sprint(port))
}

// listen opens a TCP listener and reports it ready.
func (e *Env) listen(ctx context.Context, port int) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", e.listenAddr(port))
	if err != nil {
		return nil, err
	}
	e.ready("tcp", ln.Addr())
	return ln, nil
}

// serveConns accepts connections on ln until ctx is cancelled and runs
// handle for each one in its own goroutine; it closes ln and every open
// connection on the way out, and waits for the handlers.
func serveConns(ctx context.Context, ln net.Listener, handle func(context.Context, net.Conn)) error {
	tr := newConnTracker()
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		tr.closeAll()
	})
	defer stop()
	defer tr.wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait, do not die.
			if !sleep(ctx, 50*time.Millisecond) {
				return nil
			}
			continue
		}
		if !tr.add(c) {
			c.Close()
			return nil
		}
		go func() {
			defer tr.done(c)
			handle(ctx, c)
		}()
	}
}

// hostOf returns the host part of "HOST", "HOST:PORT" or a URL.
func hostOf(ref string) string {
	if i := strings.Index(ref, "://"); i >= 0 {
		rest := ref[i+3:]
		if j := strings.IndexAny(rest, "/?#"); j >= 0 {
			rest = rest[:j]
		}
		ref = rest
	}
	if h, _, err := net.SplitHostPort(ref); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(ref, "["), "]")
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, s) })
}
