package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/agentapi"
)

// fakeAlertSender is the manager at the SendAlerts boundary: it fails while
// told to, and records every batch it accepted.
type fakeAlertSender struct {
	mu      sync.Mutex
	fail    bool
	calls   int
	batches []*agentapi.AlertBatch
	got     chan struct{}
}

func (f *fakeAlertSender) send(ctx context.Context, b *agentapi.AlertBatch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail {
		return errors.New("manager unreachable")
	}
	// The shipper reuses nothing of a delivered batch, but copy anyway:
	// the real call serialises it before returning.
	cp := &agentapi.AlertBatch{Dropped: b.Dropped}
	for _, e := range b.Eve {
		cp.Eve = append(cp.Eve, append([]byte(nil), e...))
	}
	f.batches = append(f.batches, cp)
	select {
	case f.got <- struct{}{}:
	default:
	}
	return nil
}

func (f *fakeAlertSender) setFail(v bool) {
	f.mu.Lock()
	f.fail = v
	f.mu.Unlock()
}

func (f *fakeAlertSender) delivered() (eve []string, dropped uint64, batches []int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.batches {
		for _, e := range b.Eve {
			eve = append(eve, string(e))
		}
		dropped += b.Dropped
		batches = append(batches, len(b.Eve))
	}
	return eve, dropped, batches
}

func testShipper(q *alertQueue, f *fakeAlertSender) *alertShipper {
	return &alertShipper{q: q, send: f.send, maxDelay: 20 * time.Millisecond,
		minBackoff: time.Millisecond, maxBackoff: 5 * time.Millisecond, sendTimeout: time.Second,
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func eveN(i int) []byte { return []byte(fmt.Sprintf(`{"event_type":"alert","n":%d}`, i)) }

// TestAlertShipperBatchesInOrder: alerts arrive in order, in batches of at
// most alertBatchMax, a lone alert after the delay; the caller's buffer is
// copied, so it may reuse it.
func TestAlertShipperBatchesInOrder(t *testing.T) {
	var q alertQueue
	f := &fakeAlertSender{got: make(chan struct{}, 1)}
	buf := make([]byte, 0, 64)
	var want []string
	for i := range 1200 {
		buf = append(buf[:0], eveN(i)...)
		q.push(buf)
		want = append(want, string(eveN(i)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { testShipper(&q, f).run(ctx); close(done) }()
	waitUntil(t, "1200 alerts", func() bool { e, _, _ := f.delivered(); return len(e) == 1200 })
	q.push(eveN(1200))
	want = append(want, string(eveN(1200)))
	waitUntil(t, "the lone alert after the delay", func() bool { e, _, _ := f.delivered(); return len(e) == 1201 })
	cancel()
	<-done
	got, dropped, batches := f.delivered()
	if !slices.Equal(got, want) {
		t.Errorf("delivered %d alerts out of order or changed", len(got))
	}
	if dropped != 0 {
		t.Errorf("reported %d dropped", dropped)
	}
	for _, n := range batches {
		if n > alertBatchMax || n == 0 {
			t.Errorf("batch of %d alerts (max %d): %v", n, alertBatchMax, batches)
		}
	}
	if st := q.stats(); st.Queued != 1201 || st.Delivered != 1201 || st.Waiting != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestAlertQueueOverflowAndRetry: while the manager is away, the oldest
// alerts go and are counted; the failing batch is retried, not lost; the
// next delivered batch tells the manager how many were dropped, once.
func TestAlertQueueOverflowAndRetry(t *testing.T) {
	q := alertQueue{capacity: 10}
	f := &fakeAlertSender{got: make(chan struct{}, 1)}
	f.setFail(true)
	for i := range 25 {
		q.push(eveN(i))
	}
	q.push(nil)                           // empty: dropped
	q.push(make([]byte, maxAlertBytes+1)) // too large: dropped
	if st := q.stats(); st.Dropped != 17 || st.Waiting != 10 {
		t.Fatalf("after overflow: %+v", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { testShipper(&q, f).run(ctx); close(done) }()
	waitUntil(t, "retries", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.calls >= 3 })
	f.setFail(false)
	waitUntil(t, "delivery", func() bool { e, _, _ := f.delivered(); return len(e) == 10 })
	q.push(eveN(100))
	waitUntil(t, "the next alert", func() bool { e, _, _ := f.delivered(); return len(e) == 11 })
	cancel()
	<-done
	got, dropped, _ := f.delivered()
	var want []string
	for i := 15; i < 25; i++ {
		want = append(want, string(eveN(i)))
	}
	want = append(want, string(eveN(100)))
	if !slices.Equal(got, want) {
		t.Errorf("delivered %q\nwant %q", got, want)
	}
	if dropped != 17 {
		t.Errorf("manager told of %d dropped alerts, want 17 (once)", dropped)
	}
	if st := q.stats(); st.Failures < 3 || st.LastError == "" {
		t.Errorf("failures not counted: %+v", st)
	}
}

// TestAlertShipperPutsBackOnShutdown: a session that ends with a batch
// undelivered leaves it at the front for the next session's shipper.
func TestAlertShipperPutsBackOnShutdown(t *testing.T) {
	var q alertQueue
	f := &fakeAlertSender{got: make(chan struct{}, 1)}
	f.setFail(true)
	for i := range 3 {
		q.push(eveN(i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { testShipper(&q, f).run(ctx); close(done) }()
	waitUntil(t, "a failed send", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.calls >= 1 })
	q.push(eveN(3))
	cancel()
	<-done
	if n := q.len(); n != 4 {
		t.Fatalf("%d alerts waiting after shutdown, want 4", n)
	}
	f.setFail(false)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go testShipper(&q, f).run(ctx)
	waitUntil(t, "the next session's delivery", func() bool { e, _, _ := f.delivered(); return len(e) == 4 })
	got, _, _ := f.delivered()
	want := []string{string(eveN(0)), string(eveN(1)), string(eveN(2)), string(eveN(3))}
	if !slices.Equal(got, want) {
		t.Errorf("delivered %q, want %q", got, want)
	}
}

// TestAlertBatchBytes: big records make smaller batches, so that none
// exceeds what the agent channel carries.
func TestAlertBatchBytes(t *testing.T) {
	var q alertQueue
	big := make([]byte, maxAlertBytes)
	for i := range 100 {
		big[0] = byte(i)
		q.push(big)
	}
	var sizes []int
	for q.len() > 0 {
		b := q.take(nil, alertBatchMax)
		n := 0
		for _, e := range b {
			n += len(e)
		}
		if n > alertBatchBytes {
			t.Fatalf("batch of %d bytes, max %d", n, alertBatchBytes)
		}
		sizes = append(sizes, len(b))
	}
	if want := []int{32, 32, 32, 4}; !slices.Equal(sizes, want) {
		t.Errorf("batches of %v alerts, want %v", sizes, want)
	}
}

// TestSendAlertConcurrent: SendAlert is called from packet goroutines.
func TestSendAlertConcurrent(t *testing.T) {
	a := &Agent{}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				a.SendAlert(eveN(g*1000 + i))
			}
		}()
	}
	wg.Wait()
	if st := a.AlertStats(); st.Queued != 8000 || st.Waiting != 8000 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}
