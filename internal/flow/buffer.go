package flow

import "sync"

// Buffer holds records between the producers (conntrack, NFLOG) and the
// Shipper, in arrival order, up to a fixed number of records. It is what
// keeps records while the manager is unreachable.
//
// When it is full, the oldest waiting record is dropped and counted: a
// later record says more about the present, and the updates of a long flow
// are repeated at every dump anyway. An update that is still waiting is
// replaced in place by a newer update or the end of the same flow
// (counters are totals, so nothing is lost), which keeps an outage from
// filling the buffer with updates of the same few long flows.
type Buffer struct {
	mu   sync.Mutex
	ring []Record
	head int
	n    int
	// base is the sequence number of ring[head]; it goes down on Requeue.
	base int64
	// waiting maps the ID of a waiting update to its sequence number.
	waiting map[string]int64
	ready   chan struct{}
	stats   BufferStats
}

// BufferStats are the buffer's counters since it was made.
type BufferStats struct {
	Capacity int
	Len      int
	// Pushed counts records offered by producers.
	Pushed uint64
	// Coalesced counts records that replaced a waiting update of the same
	// flow instead of taking a slot.
	Coalesced uint64
	// Dropped counts records lost because the buffer was full, by kind.
	Dropped        uint64
	DroppedUpdates uint64
	DroppedEnds    uint64
	DroppedDrops   uint64
	// Taken counts records handed to the shipper; Requeued those it gave
	// back undelivered.
	Taken    uint64
	Requeued uint64
}

// NewBuffer returns a buffer holding at most capacity records.
func NewBuffer(capacity int) *Buffer {
	if capacity <= 0 {
		capacity = DefaultBufferCapacity
	}
	return &Buffer{
		ring:    make([]Record, capacity),
		waiting: make(map[string]int64),
		ready:   make(chan struct{}, 1),
		stats:   BufferStats{Capacity: capacity},
	}
}

// DefaultBufferCapacity holds a minute of a host opening 1000 connections a
// second, in about 16 MB.
const DefaultBufferCapacity = 1 << 16

func (b *Buffer) pos(seq int64) int { return (b.head + int(seq-b.base)) % len(b.ring) }

// Push adds records; it never blocks.
func (b *Buffer) Push(recs ...Record) {
	if len(recs) == 0 {
		return
	}
	b.mu.Lock()
	for i := range recs {
		r := &recs[i]
		b.stats.Pushed++
		if r.Kind == KindUpdate || r.Kind == KindEnd {
			if seq, ok := b.waiting[r.ID]; ok {
				b.ring[b.pos(seq)] = *r
				b.stats.Coalesced++
				if r.Kind == KindEnd {
					delete(b.waiting, r.ID)
				}
				continue
			}
		}
		if b.n == len(b.ring) {
			b.drop(b.popHead())
		}
		seq := b.base + int64(b.n)
		b.ring[b.pos(seq)] = *r
		b.n++
		if r.Kind == KindUpdate {
			b.waiting[r.ID] = seq
		}
	}
	b.mu.Unlock()
	select {
	case b.ready <- struct{}{}:
	default:
	}
}

func (b *Buffer) drop(k Kind) {
	b.stats.Dropped++
	switch k {
	case KindUpdate:
		b.stats.DroppedUpdates++
	case KindEnd:
		b.stats.DroppedEnds++
	case KindDrop:
		b.stats.DroppedDrops++
	}
}

// popHead removes the oldest record and returns its kind.
func (b *Buffer) popHead() Kind {
	r := &b.ring[b.head]
	k := r.Kind
	if k == KindUpdate {
		if seq, ok := b.waiting[r.ID]; ok && seq == b.base {
			delete(b.waiting, r.ID)
		}
	}
	*r = Record{} // release its strings
	b.head = (b.head + 1) % len(b.ring)
	b.base++
	b.n--
	return k
}

// Take moves up to max of the oldest records to dst and returns it.
func (b *Buffer) Take(dst []Record, max int) []Record {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.n > 0 && max > 0 {
		dst = append(dst, b.ring[b.head])
		b.popHead()
		max--
		b.stats.Taken++
	}
	return dst
}

// Requeue puts records taken earlier and not delivered back in front of
// everything else, oldest first as they were. If they do not all fit, the
// oldest of them are dropped and counted.
func (b *Buffer) Requeue(recs []Record) {
	b.mu.Lock()
	for i := len(recs) - 1; i >= 0; i-- {
		if b.n == len(b.ring) {
			for _, r := range recs[:i+1] {
				b.drop(r.Kind)
			}
			break
		}
		b.head = (b.head - 1 + len(b.ring)) % len(b.ring)
		b.base--
		b.ring[b.head] = recs[i]
		b.n++
		b.stats.Requeued++
	}
	b.mu.Unlock()
	if len(recs) > 0 {
		select {
		case b.ready <- struct{}{}:
		default:
		}
	}
}

// Len is the number of records waiting.
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// Ready receives a value after records were pushed; one value may stand
// for many pushes.
func (b *Buffer) Ready() <-chan struct{} { return b.ready }

// Stats returns the buffer's counters.
func (b *Buffer) Stats() BufferStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.stats
	s.Len = b.n
	return s
}
