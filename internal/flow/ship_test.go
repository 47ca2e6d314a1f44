package flow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// fakeSender is a manager that can be down, and that can store a batch but
// lose the answer.
type fakeSender struct {
	mu        sync.Mutex
	down      bool
	loseAcks  int // the next n successful sends report an error
	calls     int
	delivered map[string]int // ID -> times received
	order     []string
}

func (f *fakeSender) Send(ctx context.Context, recs []Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.down {
		return errors.New("connection refused")
	}
	if f.delivered == nil {
		f.delivered = map[string]int{}
	}
	for _, r := range recs {
		f.delivered[r.ID]++
		f.order = append(f.order, r.ID)
	}
	if f.loseAcks > 0 {
		f.loseAcks--
		return context.DeadlineExceeded
	}
	return nil
}

func (f *fakeSender) set(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

func (f *fakeSender) count() (distinct, calls int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.delivered), f.calls
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestShipperRetriesWithoutLoss(t *testing.T) {
	buf := NewBuffer(10000)
	fs := &fakeSender{down: true, loseAcks: 2}
	sh := NewShipper(buf, fs, ShipperConfig{MaxBatch: 100, MaxDelay: 10 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, Log: quietLog()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- sh.Run(ctx) }()

	const n = 5000
	for i := range n {
		buf.Push(rec(KindEnd, fmt.Sprint("r", i), uint64(i)))
		if i == n/2 {
			// The manager is down for the first half of the records.
			waitFor(t, "failed sends", func() bool { return sh.Stats().Failures >= 5 })
			fs.set(false)
		}
	}
	waitFor(t, "every record delivered", func() bool { d, _ := fs.count(); return d == n })
	waitFor(t, "the buffer empties", func() bool { return buf.Len() == 0 && sh.Stats().InFlight == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := sh.Stats()
	if st.Records != n {
		t.Errorf("acknowledged records %d, want %d", st.Records, n)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	// Two lost acks make the first batch arrive three times; nothing else
	// arrives twice and nothing is missing.
	dups := 0
	for id, c := range fs.delivered {
		if c > 3 {
			t.Errorf("%s delivered %d times", id, c)
		}
		if c > 1 {
			dups++
		}
	}
	if dups != 100 {
		t.Errorf("%d records delivered more than once; want one batch of 100", dups)
	}
	// Order is kept, apart from the resent batches.
	seen := map[string]bool{}
	prev := -1
	for _, id := range fs.order {
		if seen[id] {
			continue
		}
		seen[id] = true
		var i int
		fmt.Sscanf(id, "r%d", &i)
		if i < prev {
			t.Fatalf("record %d delivered after %d", i, prev)
		}
		prev = i
	}
	if bs := buf.Stats(); bs.Dropped != 0 {
		t.Errorf("buffer dropped %d", bs.Dropped)
	}
}

func TestShipperBatchesBySizeAndTime(t *testing.T) {
	buf := NewBuffer(1000)
	var mu sync.Mutex
	var sizes []int
	sender := senderFunc(func(ctx context.Context, recs []Record) error {
		mu.Lock()
		sizes = append(sizes, len(recs))
		mu.Unlock()
		return nil
	})
	sh := NewShipper(buf, sender, ShipperConfig{MaxBatch: 10, MaxDelay: 50 * time.Millisecond, Log: quietLog()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 25 {
		buf.Push(rec(KindEnd, fmt.Sprint(i), 1))
	}
	go sh.Run(ctx)
	waitFor(t, "25 records", func() bool { return sh.Stats().Records == 25 })
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(sizes) != "[10 10 5]" {
		t.Errorf("batch sizes %v, want [10 10 5]", sizes)
	}
}

func TestShipperRequeuesOnShutdown(t *testing.T) {
	buf := NewBuffer(100)
	fs := &fakeSender{down: true}
	sh := NewShipper(buf, fs, ShipperConfig{MaxBatch: 3, MaxDelay: time.Millisecond, MinBackoff: time.Millisecond, Log: quietLog()})
	for i := range 5 {
		buf.Push(rec(KindEnd, fmt.Sprint(i), 1))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- sh.Run(ctx) }()
	waitFor(t, "a failure", func() bool { return sh.Stats().Failures > 0 })
	cancel()
	<-done
	// The batch in flight is back in front, in order; a new shipper
	// delivers all five.
	fs.set(false)
	sh2 := NewShipper(buf, fs, ShipperConfig{MaxBatch: 10, MaxDelay: time.Millisecond, Log: quietLog()})
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go sh2.Run(ctx2)
	waitFor(t, "five records", func() bool { d, _ := fs.count(); return d == 5 })
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fmt.Sprint(fs.order) != "[0 1 2 3 4]" {
		t.Errorf("delivered %v", fs.order)
	}
}

type senderFunc func(ctx context.Context, recs []Record) error

func (f senderFunc) Send(ctx context.Context, recs []Record) error { return f(ctx, recs) }
