package l7

import (
	"net/netip"
	"sync"
	"time"
)

// Learned is what the reader found out about one connection.
type Learned struct {
	App        string // AppID, "APP_SSH"
	TLSVersion string // "1.3"; "" when not TLS
	// ServerName is the TLS SNI, the HTTP Host or the DNS question.
	ServerName string
	// At is when the reader decided the connection.
	At time.Time
}

// Tuple names a connection in its original direction.
type Tuple struct {
	Src, Dst     netip.Addr
	Proto        uint8
	SPort, DPort uint16
}

// Table holds what the reader learned per connection for the flow
// collector, which reports a connection seconds to hours after the reader
// decided it. It is bounded (the oldest entry goes first) and entries
// expire when nothing asked for them for a while; a lookup renews one. It
// is safe for concurrent use.
type Table struct {
	ttl time.Duration
	now func() time.Time

	mu   sync.Mutex
	m    map[Tuple]learnedEntry
	ring []Tuple // insertion order, for eviction
	head int
}

type learnedEntry struct {
	Learned
	expires time.Time
	slot    int // its place in ring
}

// Defaults of NewTable.
const (
	DefaultTableSize = 16384
	DefaultTableTTL  = 10 * time.Minute
)

// NewTable returns a table of at most size entries (<= 0: DefaultTableSize)
// that forgets an entry ttl after it was last put or looked up (<= 0:
// DefaultTableTTL). The flow collector looks a connection up at every dump
// interval while it moves, so an active connection keeps its entry.
func NewTable(size int, ttl time.Duration) *Table {
	if size <= 0 {
		size = DefaultTableSize
	}
	if ttl <= 0 {
		ttl = DefaultTableTTL
	}
	return &Table{ttl: ttl, now: time.Now, m: make(map[Tuple]learnedEntry), ring: make([]Tuple, size)}
}

func normal(t Tuple) Tuple {
	t.Src, t.Dst = t.Src.Unmap(), t.Dst.Unmap()
	return t
}

// Put records what was learned of the connection t, replacing an older
// entry of the same tuple (a connection that reused it).
func (t *Table) Put(k Tuple, l Learned) {
	k = normal(k)
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[k]
	if !ok {
		// The slot's tuple may have expired and come back in another
		// slot: only the entry that still owns the slot goes.
		if old := t.ring[t.head]; old.Src.IsValid() && t.m[old].slot == t.head {
			delete(t.m, old)
		}
		t.ring[t.head] = k
		e.slot = t.head
		t.head = (t.head + 1) % len(t.ring)
	}
	e.Learned, e.expires = l, t.now().Add(t.ttl)
	t.m[k] = e
}

// Lookup returns what was learned of the connection k, if anything and not
// expired.
func (t *Table) Lookup(k Tuple) (Learned, bool) {
	k = normal(k)
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[k]
	if !ok {
		return Learned{}, false
	}
	now := t.now()
	if now.After(e.expires) {
		// Left in the ring; a Put of another tuple overwrites its slot.
		delete(t.m, k)
		return Learned{}, false
	}
	e.expires = now.Add(t.ttl)
	t.m[k] = e
	return e.Learned, true
}

// Len is the number of entries, expired ones not yet noticed included.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
