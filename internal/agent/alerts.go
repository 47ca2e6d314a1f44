package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bulkhead/bulkhead/internal/agentapi"
)

// IDS alerts take the flow records' way to the manager, on a path of their
// own: the IDS reader hands each alert, a Suricata EVE JSON record, to
// SendAlert; a bounded queue that outlives sessions keeps them while the
// manager is away (the oldest dropped and counted when full); a shipper in
// each manager session sends them with SendAlerts in batches, retries a
// failed batch with backoff, and puts back what it could not deliver when
// the session ends. flow.Shipper is typed to flow records, so the loop is
// written again here, small: alerts are rare next to flow records, and
// the manager drops a resent batch's duplicates by the records' bytes.

// Alert batching and buffering.
const (
	// DefaultAlertBuffer bounds the alerts kept while the manager is
	// unreachable.
	DefaultAlertBuffer = 20000
	// alertBatchMax is the most alerts in one SendAlerts.
	alertBatchMax = 500
	// maxAlertBytes drops a record no manager would accept, and
	// alertBatchBytes bounds a batch: the agent channel's messages are
	// bounded (16 MiB, controlplane.MaxFlowBatchBytes).
	maxAlertBytes   = 256 << 10
	alertBatchBytes = 8 << 20
)

// SendAlert queues one IDS alert (a Suricata EVE JSON record) for the
// manager. It copies eve, never blocks, and is safe for concurrent use:
// the IDS reader calls it from its packet path.
func (a *Agent) SendAlert(eve []byte) { a.alerts.push(eve) }

// AlertStats are the agent's IDS alert counters since it started.
type AlertStats struct {
	// Queued counts alerts handed to SendAlert; Waiting are not yet
	// delivered; Dropped were discarded (queue full, or too large).
	Queued, Dropped uint64
	Waiting         int
	// Batches and Delivered count what the manager acknowledged.
	Batches, Delivered uint64
	// Failures counts failed SendAlerts calls; their batches were sent
	// again.
	Failures  uint64
	LastError string
}

// AlertStats returns the agent's IDS alert counters.
func (a *Agent) AlertStats() AlertStats { return a.alerts.stats() }

// alertQueue is the bounded FIFO of alerts waiting for the manager. Its
// zero value holds DefaultAlertBuffer alerts.
type alertQueue struct {
	mu       sync.Mutex
	capacity int // 0: DefaultAlertBuffer
	q        [][]byte
	ready    chan struct{} // holds one wake-up when alerts arrive
	st       AlertStats
	// reported is the drop count the manager was told of.
	reported uint64
}

func (q *alertQueue) readyLocked() chan struct{} {
	if q.ready == nil {
		q.ready = make(chan struct{}, 1)
	}
	return q.ready
}

func (q *alertQueue) limit() int {
	if q.capacity <= 0 {
		return DefaultAlertBuffer
	}
	return q.capacity
}

func (q *alertQueue) push(eve []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.st.Queued++
	if len(eve) == 0 || len(eve) > maxAlertBytes {
		q.st.Dropped++
		return
	}
	if len(q.q) >= q.limit() {
		q.q[0] = nil
		q.q = q.q[1:]
		q.st.Dropped++
	}
	q.q = append(q.q, append([]byte(nil), eve...))
	select {
	case q.readyLocked() <- struct{}{}:
	default:
	}
}

// take moves up to n alerts, and at most alertBatchBytes of them, from the
// front into batch.
func (q *alertQueue) take(batch [][]byte, n int) [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	k, size := 0, 0
	for k < min(n, len(q.q)) && (k == 0 || size+len(q.q[k]) <= alertBatchBytes) {
		size += len(q.q[k])
		k++
	}
	batch = append(batch, q.q[:k]...)
	clear(q.q[:k])
	q.q = q.q[k:]
	return batch
}

// requeue puts an undelivered batch back at the front; what exceeds the
// capacity then goes, oldest first.
func (q *alertQueue) requeue(batch [][]byte) {
	if len(batch) == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	merged := make([][]byte, 0, len(batch)+len(q.q))
	merged = append(append(merged, batch...), q.q...)
	if over := len(merged) - q.limit(); over > 0 {
		merged = merged[over:]
		q.st.Dropped += uint64(over)
	}
	q.q = merged
	select {
	case q.readyLocked() <- struct{}{}:
	default:
	}
}

func (q *alertQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.q)
}

func (q *alertQueue) wait() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.readyLocked()
}

func (q *alertQueue) stats() AlertStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	st := q.st
	st.Waiting = len(q.q)
	return st
}

// droppedSince returns the drops the manager was not told of yet.
func (q *alertQueue) droppedSince() (total, since uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.st.Dropped, q.st.Dropped - q.reported
}

// delivered records an acknowledged batch that reported drops up to
// dropped.
func (q *alertQueue) delivered(n int, dropped uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.reported = dropped
	q.st.Batches++
	q.st.Delivered += uint64(n)
}

func (q *alertQueue) failed(err error) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.st.Failures++
	q.st.LastError = err.Error()
	return q.st.Failures
}

// alertShipper sends the queue's alerts through send until its context
// ends.
type alertShipper struct {
	q    *alertQueue
	send func(ctx context.Context, b *agentapi.AlertBatch) error
	// maxDelay is how long an alert may wait for its batch to fill.
	maxDelay               time.Duration
	minBackoff, maxBackoff time.Duration
	sendTimeout            time.Duration
	log                    *slog.Logger
}

// run ships until ctx is done, then puts back the batch it holds.
func (s *alertShipper) run(ctx context.Context) {
	var batch [][]byte
	bo := newBackoff(s.minBackoff, s.maxBackoff)
	for {
		if len(batch) == 0 {
			if !s.due(ctx) {
				return
			}
			batch = s.q.take(batch, alertBatchMax)
		}
		dropped, since := s.q.droppedSince()
		sctx, cancel := context.WithTimeout(ctx, s.sendTimeout)
		err := s.send(sctx, &agentapi.AlertBatch{Eve: batch, Dropped: since})
		cancel()
		if err == nil {
			s.q.delivered(len(batch), dropped)
			batch = batch[:0]
			bo.reset()
			continue
		}
		if ctx.Err() != nil {
			s.q.requeue(batch)
			return
		}
		// One line per failure would flood the log during an outage.
		if n := s.q.failed(err); n&(n-1) == 0 {
			s.log.Warn("IDS alerts: send failed; retrying", "alerts", len(batch), "waiting", s.q.len(), "failures", n, "err", err)
		}
		if !sleep(ctx, bo.next()) {
			s.q.requeue(batch)
			return
		}
	}
}

// due waits until a batch is due: alertBatchMax alerts waiting, or
// maxDelay since alerts arrived. It reports false when ctx ended first.
func (s *alertShipper) due(ctx context.Context) bool {
	var timer <-chan time.Time
	for {
		n := s.q.len()
		if n >= alertBatchMax {
			return true
		}
		if n > 0 && timer == nil {
			t := time.NewTimer(s.maxDelay)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-ctx.Done():
			return false
		case <-s.q.wait():
		case <-timer:
			return true
		}
	}
}

// startAlertShipper ships IDS alerts during a manager session, and returns
// a function that waits for it to have put back what it did not deliver.
func (a *Agent) startAlertShipper(ctx context.Context) (wait func()) {
	sh := &alertShipper{
		q: &a.alerts,
		send: func(ctx context.Context, b *agentapi.AlertBatch) error {
			c := a.client.Load()
			if c == nil {
				return errNotConnected
			}
			if _, err := (*c).SendAlerts(ctx, b); err != nil {
				return fmt.Errorf("agent: send %d IDS alerts: %w", len(b.Eve), err)
			}
			return nil
		},
		maxDelay:    a.cfg.FlowInterval,
		minBackoff:  a.cfg.BackoffMin,
		maxBackoff:  a.cfg.BackoffMax,
		sendTimeout: a.cfg.RPCTimeout,
		log:         a.log,
	}
	done := make(chan struct{})
	go func() { sh.run(ctx); close(done) }()
	return func() { <-done }
}
