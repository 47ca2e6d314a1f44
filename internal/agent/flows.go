package agent

import (
	"sync"

	"github.com/bulkhead/bulkhead/internal/agentapi"
)

// flowBatchSize is the most records one SendFlows carries (about 100 bytes
// each on the wire).
const flowBatchSize = 5000

// flowQueue buffers flow records for the manager, bounded: when full, the
// oldest records are dropped and counted, so that what arrives after an
// outage is the most recent traffic plus an exact count of what was lost.
type flowQueue struct {
	mu   sync.Mutex
	recs []*agentapi.FlowRecord
	// head is the sequence number of recs[0]: records are numbered as
	// they arrive, so that a batch sent while add dropped some of its
	// records is removed exactly.
	head    uint64
	max     int
	dropped uint64 // not yet reported to the manager
}

func newFlowQueue(max int) *flowQueue { return &flowQueue{max: max} }

func (q *flowQueue) add(recs []*agentapi.FlowRecord) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.recs = append(q.recs, recs...)
	if over := len(q.recs) - q.max; over > 0 {
		q.dropped += uint64(over)
		q.head += uint64(over)
		q.recs = append(q.recs[:0], q.recs[over:]...)
	}
}

// flowBatch is what peek handed out: commit it once the manager has it.
type flowBatch struct {
	recs    []*agentapi.FlowRecord
	start   uint64
	dropped uint64
}

// peek returns up to n of the oldest records and the drop count, without
// removing them.
func (q *flowQueue) peek(n int) flowBatch {
	q.mu.Lock()
	defer q.mu.Unlock()
	n = min(n, len(q.recs))
	return flowBatch{recs: append([]*agentapi.FlowRecord(nil), q.recs[:n]...), start: q.head, dropped: q.dropped}
}

// commit removes what b sent: its records still queued, and its drop count.
func (q *flowQueue) commit(b flowBatch) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if end := b.start + uint64(len(b.recs)); end > q.head {
		n := int(min(end-q.head, uint64(len(q.recs))))
		q.recs = append(q.recs[:0], q.recs[n:]...)
		q.head += uint64(n)
	}
	q.dropped -= min(b.dropped, q.dropped)
}

// len returns the number of queued records and unreported drops.
func (q *flowQueue) len() (int, uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.recs), q.dropped
}
