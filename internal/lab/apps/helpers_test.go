package apps

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuf collects an app's log lines for the test to look at.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// lines returns the lines that contain every one of subs.
func (l *logBuf) lines(subs ...string) []string {
	var out []string
	for line := range strings.SplitSeq(l.String(), "\n") {
		ok := line != ""
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// waitFor waits until a line holds every one of subs.
func (l *logBuf) waitFor(t *testing.T, d time.Duration, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if ls := l.lines(subs...); len(ls) > 0 {
			return ls[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no log line with %q within %s; log:\n%s", subs, d, l.String())
	return ""
}

func newLog() (*logBuf, *slog.Logger) {
	b := &logBuf{}
	return b, slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startServer runs a server on 127.0.0.1 until the test ends and returns
// the addresses it reported ready, by network ("tcp", "udp").
func startServer(t *testing.T, env *Env, log *slog.Logger, run func(ctx context.Context) error) map[string]string {
	t.Helper()
	type ready struct{ network, addr string }
	ch := make(chan ready, 4)
	env.Bind = "127.0.0.1"
	env.Log = log
	env.Ready = func(network string, a net.Addr) { ch <- ready{network, a.String()} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("server did not stop within 5s of cancel")
		}
	})
	addrs := map[string]string{}
	select {
	case r := <-ch:
		addrs[r.network] = r.addr
	case err := <-done:
		t.Fatalf("server stopped at once: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready within 10s")
	}
	// A second listener (DNS: UDP next to TCP) reports right after.
	select {
	case r := <-ch:
		addrs[r.network] = r.addr
	case <-time.After(100 * time.Millisecond):
	}
	return addrs
}

// runClient runs a client to completion (its Count rounds) with a bound.
func runClient(t *testing.T, d time.Duration, run func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := run(ctx); err != nil {
		t.Fatalf("client: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("client did not finish its rounds within %s", d)
	}
}

func once() Pace {
	return Pace{Interval: Duration(50 * time.Millisecond), Count: 1, Timeout: Duration(5 * time.Second)}
}
