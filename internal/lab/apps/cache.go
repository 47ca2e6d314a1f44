package apps

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// CacheConfig is the Redis-like cache ("cache"), speaking RESP2: PING, ECHO,
// AUTH, SELECT, GET, SET [EX s|PX ms], DEL, EXISTS, INCR, EXPIRE, TTL,
// DBSIZE, INFO, COMMAND, QUIT.
type CacheConfig struct {
	Env `yaml:"-"`
	// Port to listen on; 0 picks a free one. Default 6379.
	Port int `json:"port" yaml:"port"`
	// Password, if set, must be given with AUTH before anything but PING.
	Password string `json:"password,omitempty" yaml:"password"`
	// MaxKeys bounds memory; default 10000.
	MaxKeys int `json:"maxKeys,omitempty" yaml:"maxKeys"`
}

// SetDefaults fills in port 6379.
func (c *CacheConfig) SetDefaults() {
	if c.Port == 0 {
		c.Port = 6379
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = 10000
	}
}

// Validate checks the configuration.
func (c CacheConfig) Validate() error {
	errs := []error{checkPort("port", c.Port)}
	if c.MaxKeys < 0 {
		errs = append(errs, fieldErr("maxKeys", "%d is negative", c.MaxKeys))
	}
	return joinNonNil(errs)
}

type entry struct {
	val     string
	expires time.Time // zero: never
}

type store struct {
	mu   sync.Mutex
	m    map[string]entry
	max  int
	hits int
	miss int
}

func (s *store) get(k string) (string, bool) {
	e, ok := s.m[k]
	if ok && !e.expires.IsZero() && time.Now().After(e.expires) {
		delete(s.m, k)
		ok = false
	}
	if ok {
		s.hits++
	} else {
		s.miss++
	}
	return e.val, ok
}

func (s *store) set(k, v string, ttl time.Duration) {
	if _, ok := s.m[k]; !ok && len(s.m) >= s.max {
		for old := range s.m { // evict one arbitrary key
			delete(s.m, old)
			break
		}
	}
	e := entry{val: v}
	if ttl > 0 {
		e.expires = time.Now().Add(ttl)
	}
	s.m[k] = e
}

// RunCache serves RESP until ctx is cancelled.
func RunCache(ctx context.Context, cfg CacheConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	ln, err := cfg.listen(ctx, cfg.Port)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	log := cfg.log().With("server", "cache")
	log.Info("listening", "addr", ln.Addr().String())
	st := &store{m: map[string]entry{}, max: cfg.MaxKeys}
	if st.max <= 0 {
		st.max = 10000
	}
	return serveConns(ctx, ln, func(ctx context.Context, c net.Conn) {
		r := bufio.NewReader(c)
		w := bufio.NewWriter(c)
		authed := cfg.Password == ""
		remote := c.RemoteAddr().String()
		for {
			c.SetReadDeadline(time.Now().Add(5 * time.Minute))
			args, err := readRESP(r)
			if err != nil {
				var pe *respError
				if errors.As(err, &pe) {
					writeRESPError(w, "ERR Protocol error: "+pe.msg)
					w.Flush()
				}
				return
			}
			if len(args) == 0 {
				continue
			}
			cmd := strings.ToUpper(args[0])
			quit := st.command(w, cmd, args, &authed, cfg.Password)
			log.Info("command", "cmd", cmd, "key", argOr(args, 1), "remote", remote)
			if err := w.Flush(); err != nil || quit {
				return
			}
		}
	})
}

func argOr(args []string, i int) string {
	if i < len(args) {
		if len(args[i]) > 64 {
			return args[i][:64] + "..."
		}
		return args[i]
	}
	return ""
}

// command runs one command and writes its reply; true means close.
func (st *store) command(w *bufio.Writer, cmd string, args []string, authed *bool, password string) bool {
	arity := map[string]int{"GET": 2, "DEL": -2, "EXISTS": -2, "INCR": 2, "EXPIRE": 3, "TTL": 2, "ECHO": 2, "AUTH": -2, "SELECT": 2, "SET": -3}
	if n, ok := arity[cmd]; ok && (n > 0 && len(args) != n || n < 0 && len(args) < -n) {
		writeRESPError(w, fmt.Sprintf("ERR wrong number of arguments for '%s' command", strings.ToLower(cmd)))
		return false
	}
	if !*authed && cmd != "AUTH" && cmd != "PING" && cmd != "QUIT" && cmd != "HELLO" {
		writeRESPError(w, "NOAUTH Authentication required.")
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	switch cmd {
	case "PING":
		if len(args) > 1 {
			writeBulk(w, args[1])
		} else {
			w.WriteString("+PONG\r\n")
		}
	case "ECHO":
		writeBulk(w, args[1])
	case "QUIT":
		w.WriteString("+OK\r\n")
		return true
	case "AUTH":
		pw := args[len(args)-1]
		if password == "" {
			writeRESPError(w, "ERR AUTH <password> called without any password configured for the default user.")
		} else if pw == password {
			*authed = true
			w.WriteString("+OK\r\n")
		} else {
			writeRESPError(w, "WRONGPASS invalid username-password pair or user is disabled.")
		}
	case "SELECT":
		if args[1] != "0" {
			writeRESPError(w, "ERR DB index is out of range")
		} else {
			w.WriteString("+OK\r\n")
		}
	case "GET":
		if v, ok := st.get(args[1]); ok {
			writeBulk(w, v)
		} else {
			w.WriteString("$-1\r\n")
		}
	case "SET":
		var ttl time.Duration
		for i := 3; i < len(args); i++ {
			opt := strings.ToUpper(args[i])
			if (opt == "EX" || opt == "PX") && i+1 < len(args) {
				n, err := strconv.Atoi(args[i+1])
				if err != nil || n <= 0 {
					writeRESPError(w, "ERR invalid expire time in 'set' command")
					return false
				}
				ttl = time.Duration(n) * time.Second
				if opt == "PX" {
					ttl = time.Duration(n) * time.Millisecond
				}
				i++
				continue
			}
			writeRESPError(w, "ERR syntax error")
			return false
		}
		if len(args[2]) > 1<<20 {
			writeRESPError(w, "ERR value too large for the lab cache")
			return false
		}
		st.set(args[1], args[2], ttl)
		w.WriteString("+OK\r\n")
	case "DEL", "EXISTS":
		n := 0
		for _, k := range args[1:] {
			if _, ok := st.get(k); ok {
				n++
				if cmd == "DEL" {
					delete(st.m, k)
				}
			}
		}
		fmt.Fprintf(w, ":%d\r\n", n)
	case "INCR":
		v, _ := st.get(args[1])
		if v == "" {
			v = "0"
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			writeRESPError(w, "ERR value is not an integer or out of range")
			return false
		}
		n++
		e := st.m[args[1]]
		st.set(args[1], strconv.FormatInt(n, 10), 0)
		if !e.expires.IsZero() {
			st.m[args[1]] = entry{val: strconv.FormatInt(n, 10), expires: e.expires}
		}
		fmt.Fprintf(w, ":%d\r\n", n)
	case "EXPIRE":
		n, err := strconv.Atoi(args[2])
		if err != nil {
			writeRESPError(w, "ERR value is not an integer or out of range")
			return false
		}
		if v, ok := st.get(args[1]); ok {
			st.m[args[1]] = entry{val: v, expires: time.Now().Add(time.Duration(n) * time.Second)}
			w.WriteString(":1\r\n")
		} else {
			w.WriteString(":0\r\n")
		}
	case "TTL":
		if _, ok := st.get(args[1]); !ok {
			w.WriteString(":-2\r\n")
		} else if e := st.m[args[1]]; e.expires.IsZero() {
			w.WriteString(":-1\r\n")
		} else {
			fmt.Fprintf(w, ":%d\r\n", int(time.Until(e.expires).Seconds()+0.5))
		}
	case "DBSIZE":
		fmt.Fprintf(w, ":%d\r\n", len(st.m))
	case "INFO":
		writeBulk(w, fmt.Sprintf("# Server\r\nredis_version:7.0.15-lab\r\nredis_mode:standalone\r\n# Stats\r\nkeyspace_hits:%d\r\nkeyspace_misses:%d\r\n# Keyspace\r\ndb0:keys=%d\r\n", st.hits, st.miss, len(st.m)))
	case "COMMAND", "CLIENT", "CONFIG", "HELLO":
		w.WriteString("*0\r\n")
	default:
		writeRESPError(w, fmt.Sprintf("ERR unknown command '%s', with args beginning with: ", strings.ToLower(cmd)))
	}
	return false
}

type respError struct{ msg string }

func (e *respError) Error() string { return "resp: " + e.msg }

const maxRESPArgs = 1024

// readRESP reads one command: an array of bulk strings, or an inline line.
func readRESP(r *bufio.Reader) ([]string, error) {
	line, err := readLine(r, 64<<10)
	if err != nil {
		return nil, err
	}
	if line == "" || line[0] != '*' {
		return strings.Fields(line), nil
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil || n > maxRESPArgs {
		return nil, &respError{"invalid multibulk length"}
	}
	args := make([]string, 0, max(n, 0))
	total := 0
	for range n {
		h, err := readLine(r, 64)
		if err != nil {
			return nil, err
		}
		if h == "" || h[0] != '$' {
			return nil, &respError{fmt.Sprintf("expected '$', got '%.1s'", h)}
		}
		size, err := strconv.Atoi(h[1:])
		total += size
		if err != nil || size < 0 || size > 1<<20 || total > 4<<20 {
			return nil, &respError{"invalid bulk length"}
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		args = append(args, string(buf[:size]))
	}
	return args, nil
}

func writeBulk(w *bufio.Writer, s string) { fmt.Fprintf(w, "$%d\r\n%s\r\n", len(s), s) }

func writeRESPError(w *bufio.Writer, s string) { w.WriteString("-" + s + "\r\n") }

// writeRESPCommand writes a command as an array of bulk strings.
func writeRESPCommand(w io.Writer, args ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// respReply is one reply: Kind is '+', '-', ':', '$' (Nil when $-1) or '*'.
type respReply struct {
	Kind  byte
	Str   string
	Int   int64
	Nil   bool
	Array []respReply
}

func readRESPReply(r *bufio.Reader, depth int) (respReply, error) {
	if depth > 8 {
		return respReply{}, &respError{"reply nested too deep"}
	}
	line, err := readLine(r, 1<<20)
	if err != nil {
		return respReply{}, err
	}
	if line == "" {
		return respReply{}, &respError{"empty reply"}
	}
	rep := respReply{Kind: line[0]}
	switch line[0] {
	case '+', '-':
		rep.Str = line[1:]
	case ':':
		rep.Int, err = strconv.ParseInt(line[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n > 1<<20 {
			return rep, &respError{"bad bulk length"}
		}
		if n < 0 {
			rep.Nil = true
			return rep, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return rep, err
		}
		rep.Str = string(buf[:n])
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n > maxRESPArgs {
			return rep, &respError{"bad array length"}
		}
		for range max(n, 0) {
			e, err := readRESPReply(r, depth+1)
			if err != nil {
				return rep, err
			}
			rep.Array = append(rep.Array, e)
		}
	default:
		return rep, &respError{fmt.Sprintf("unknown reply type %q", line[0])}
	}
	return rep, err
}

// cacheConn is a client connection to the cache.
type cacheConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialCache(ctx context.Context, env *Env, addr, password string, timeout time.Duration) (*cacheConn, error) {
	c, err := env.dialer(timeout).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(timeout))
	cc := &cacheConn{c: c, r: bufio.NewReader(c)}
	if password != "" {
		rep, err := cc.do("AUTH", password)
		if err == nil && rep.Kind == '-' {
			err = errors.New("cache: " + rep.Str)
		}
		if err != nil {
			c.Close()
			return nil, err
		}
	}
	return cc, nil
}

func (cc *cacheConn) do(args ...string) (respReply, error) {
	if err := writeRESPCommand(cc.c, args...); err != nil {
		return respReply{}, err
	}
	return readRESPReply(cc.r, 0)
}

func (cc *cacheConn) close() {
	cc.do("QUIT")
	cc.c.Close()
}

// CacheClientConfig reads and writes the cache ("cache-client"): a session
// store or a worker.
type CacheClientConfig struct {
	Env  `yaml:"-"`
	Pace `yaml:",inline"`
	// Target is the cache, "HOST:PORT".
	Target   string `json:"target" yaml:"target"`
	Password string `json:"password,omitempty" yaml:"password"`
	// Keys to read and write; default a few session keys.
	Keys []string `json:"keys,omitempty" yaml:"keys"`
}

// SetDefaults paces a round every 5s.
func (c *CacheClientConfig) SetDefaults() {
	c.Pace.setDefaults(5 * time.Second)
	if len(c.Keys) == 0 {
		c.Keys = []string{"session:1", "session:2", "cart:1"}
	}
}

// Validate checks the configuration.
func (c CacheClientConfig) Validate() error {
	errs := []error{c.Pace.validate(), checkHostPort("target", c.Target)}
	if len(c.Keys) == 0 {
		errs = append(errs, fieldErr("keys", "at least one key"))
	}
	return joinNonNil(errs)
}

// Refs returns the target.
func (c *CacheClientConfig) Refs() []*string { return []*string{&c.Target} }

// RunCacheClient connects once per round and does GET, SET, INCR on keys.
func RunCacheClient(ctx context.Context, cfg CacheClientConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("cache-client: %w", err)
	}
	log := cfg.log().With("client", "cache-client")
	return cfg.Pace.loop(ctx, func(ctx context.Context, n int) {
		ctx, cancel := context.WithTimeout(ctx, cfg.timeout())
		defer cancel()
		cc, err := dialCache(ctx, &cfg.Env, cfg.Target, cfg.Password, cfg.timeout())
		if err != nil {
			failed(ctx, log, "connect", "target", cfg.Target, "err", err)
			return
		}
		defer cc.close()
		k := cfg.Keys[rand.IntN(len(cfg.Keys))]
		for _, args := range [][]string{{"PING"}, {"GET", k}, {"SET", k, fmt.Sprintf("v%d", n), "EX", "60"}, {"INCR", "hits"}} {
			rep, err := cc.do(args...)
			if err != nil {
				failed(ctx, log, "command", "target", cfg.Target, "cmd", args[0], "err", err)
				return
			}
			log.Info("command", "target", cfg.Target, "cmd", args[0], "key", argOr(args, 1), "reply", string(rep.Kind))
		}
	})
}
