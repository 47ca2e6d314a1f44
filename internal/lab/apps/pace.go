package apps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as "1.5s", "200ms", "2m" in YAML and
// JSON.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes d as a string such as "1.5s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads "1.5s" (or a number of nanoseconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("duration: want a string such as \"1.5s\", got %s", b)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes d as a string such as "1.5s".
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads "1.5s"; a bad value is reported with its line, and
// decoding goes on to find more errors.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: cannot use %q as a duration (want e.g. \"1.5s\", \"200ms\", \"2m\")", n.Line, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// Pace says how often a client acts: every Interval, plus or minus a random
// Jitter, Count rounds (0: until stopped), each action bounded by Timeout.
type Pace struct {
	Interval Duration `json:"interval,omitempty" yaml:"interval"`
	Jitter   Duration `json:"jitter,omitempty" yaml:"jitter"`
	Count    int      `json:"count,omitempty" yaml:"count"`
	Timeout  Duration `json:"timeout,omitempty" yaml:"timeout"`
}

// minInterval keeps every client gentle however it is configured.
const minInterval = 10 * time.Millisecond

func (p *Pace) setDefaults(interval time.Duration) {
	if p.Interval == 0 {
		p.Interval = Duration(interval)
	}
	if p.Timeout == 0 {
		p.Timeout = Duration(5 * time.Second)
	}
}

func (p Pace) validate() error {
	var errs []error
	if p.Interval.D() < minInterval {
		errs = append(errs, fieldErr("interval", "%s is below the minimum %s", p.Interval, minInterval))
	}
	if p.Jitter < 0 || p.Jitter > p.Interval {
		errs = append(errs, fieldErr("jitter", "%s: want 0 to interval (%s)", p.Jitter, p.Interval))
	}
	if p.Count < 0 {
		errs = append(errs, fieldErr("count", "%d is negative", p.Count))
	}
	if p.Timeout < 0 || p.Timeout.D() > 5*time.Minute {
		errs = append(errs, fieldErr("timeout", "%s: want 0 to 5m", p.Timeout))
	}
	return joinErrs(errs)
}

func (p Pace) timeout() time.Duration {
	if p.Timeout <= 0 {
		return 5 * time.Second
	}
	return p.Timeout.D()
}

// next returns the wait before the next round.
func (p Pace) next() time.Duration {
	d := p.Interval.D()
	if d < minInterval {
		d = minInterval
	}
	if j := p.Jitter.D(); j > 0 {
		d += time.Duration(rand.Int64N(int64(2*j)+1)) - j
	}
	return max(d, minInterval)
}

// loop calls round now and then every p.next() until ctx is done or Count
// rounds ran. It returns nil when stopped by ctx.
func (p Pace) loop(ctx context.Context, round func(ctx context.Context, n int)) error {
	for n := 1; p.Count == 0 || n <= p.Count; n++ {
		if ctx.Err() != nil {
			return nil
		}
		round(ctx, n)
		if p.Count != 0 && n == p.Count {
			break
		}
		if !sleep(ctx, p.next()) {
			return nil
		}
	}
	return nil
}

// sleep waits d or until ctx is done; it reports whether it slept fully.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// failed logs a failed action as a warning, unless the application is
// stopping: then the failure is only the stop, and is logged at debug level.
func failed(ctx context.Context, log *slog.Logger, msg string, args ...any) {
	if errors.Is(ctx.Err(), context.Canceled) {
		log.Debug(msg, args...)
		return
	}
	log.Warn(msg, args...)
}

// limiter lets at most rate events per second through, evenly spaced.
type limiter struct {
	every time.Duration
	next  time.Time
}

func newLimiter(rate float64) *limiter {
	if rate <= 0 {
		rate = 1
	}
	return &limiter{every: time.Duration(float64(time.Second) / rate)}
}

// wait blocks until the next event may happen; false if ctx ended first.
func (l *limiter) wait(ctx context.Context) bool {
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	d := l.next.Sub(now)
	l.next = l.next.Add(l.every)
	if d <= 0 {
		return ctx.Err() == nil
	}
	return sleep(ctx, d)
}

func joinErrs(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return joinedErr(errs)
}

// joinedErr is errors.Join without the nil filtering, printed one per line.
type joinedErr []error

func (j joinedErr) Error() string {
	s := make([]string, len(j))
	for i, e := range j {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

func (j joinedErr) Unwrap() []error { return j }

// connTracker remembers a server's open connections so they can all be
// closed at shutdown.
type connTracker struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newConnTracker() *connTracker { return &connTracker{conns: map[net.Conn]struct{}{}} }

func (t *connTracker) add(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	t.wg.Add(1)
	return true
}

func (t *connTracker) done(c net.Conn) {
	c.Close()
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	t.wg.Done()
}

func (t *connTracker) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for c := range t.conns {
		c.Close()
	}
}

func (t *connTracker) wait() { t.wg.Wait() }

// PortRange is an inclusive range of ports written "20000-20999" or "22".
type PortRange struct{ Lo, Hi int }

// ParsePortRange parses "LO-HI" or a single port.
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, found := strings.Cut(strings.TrimSpace(s), "-")
	a, err := strconv.Atoi(strings.TrimSpace(lo))
	if err != nil {
		return PortRange{}, fmt.Errorf("port range %q: want LO-HI", s)
	}
	b := a
	if found {
		if b, err = strconv.Atoi(strings.TrimSpace(hi)); err != nil {
			return PortRange{}, fmt.Errorf("port range %q: want LO-HI", s)
		}
	}
	if a < 1 || b > 65535 || a > b {
		return PortRange{}, fmt.Errorf("port range %q: want 1 <= LO <= HI <= 65535", s)
	}
	return PortRange{a, b}, nil
}

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(r.Lo)
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// Size is the number of ports in r.
func (r PortRange) Size() int { return r.Hi - r.Lo + 1 }

// Overlaps reports whether r and o share a port.
func (r PortRange) Overlaps(o PortRange) bool { return r.Lo <= o.Hi && o.Lo <= r.Hi }

// parsePortList parses "22,80,8000-8100" into ranges, at most max ports.
func parsePortList(s string, maxPorts int) ([]PortRange, error) {
	var out []PortRange
	total := 0
	for part := range strings.SplitSeq(s, ",") {
		r, err := ParsePortRange(part)
		if err != nil {
			return nil, err
		}
		total += r.Size()
		if total > maxPorts {
			return nil, fmt.Errorf("%q: more than %d ports", s, maxPorts)
		}
		out = append(out, r)
	}
	return out, nil
}
