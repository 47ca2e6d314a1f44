// Package l7 is the agent's NFQUEUE reader: it receives the payload
// packets of connections the kernel left "L7 pending" (internal/nft),
// classifies each connection from them, resumes the kernel's first-match
// walk in userspace with that classification, and hands the final mark back
// with NF_REPEAT, so that the kernel writes it into the ct mark and decides
// every later packet itself.
package l7

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bulkhead/bulkhead/internal/nfq"
	"github.com/bulkhead/bulkhead/internal/nft"
)

// Classifier identifies the application of one connection from its
// payloads, in order, per direction.
type Classifier interface {
	// Feed gives one packet's payload; fromClient is the connection's
	// original direction. It returns what is known and whether that is
	// final.
	Feed(fromClient bool, payload []byte) (nft.L7Context, bool)
	// Finish returns what is known when the reader stops waiting.
	Finish() nft.L7Context
}

// NewClassifier returns a classifier for a new connection over an IP
// protocol.
type NewClassifier func(proto uint8) Classifier

// Config configures a Reader. Zero values mean the defaults.
type Config struct {
	// Queue is the NFQUEUE number; default nft.DefaultL7Queue.
	Queue uint16
	// Queues is how many consecutive queues from Queue the kernel's rule
	// spreads packets over by CPU (the NFQUEUE target's total with CPU
	// fanout): one reader thread per queue, kept on that queue's CPUs so
	// that a queued packet wakes a reader where it was queued. Default 1;
	// it must match the rule.
	Queues int
	// NetNS is a descriptor of the namespace whose queue to read; 0 the
	// caller's.
	NetNS int
	// FailOpen accepts packets the kernel cannot queue because the queue
	// is full (else they are dropped). The bypass when no reader runs is
	// the rule set's (nft.HostState.L7FailOpen).
	FailOpen bool
	// MaxConns bounds the connections followed at once; the oldest is
	// forgotten beyond it. Default 4096.
	MaxConns int
	// MaxPackets is how many payload packets a connection gets before
	// the reader decides with what it knows. Default 10.
	MaxPackets int
	// Classifier makes each connection's classifier; default DPI.
	Classifier NewClassifier
	// IfName resolves an interface index of the namespace to its name;
	// default netlink in NetNS.
	IfName func(index uint32) (string, error)
	// Learned receives what the reader learned of each connection it
	// decided with an application (Reader.Learned); default a new
	// NewTable(0, 0). Pass one table to keep it across readers.
	Learned *Table
	Log     *slog.Logger
}

// Stats are the reader's counters since it was made.
type Stats struct {
	Packets   uint64 // packets received from the queue
	Decided   uint64 // connections decided (NF_REPEAT with the final mark)
	Waiting   uint64 // packets accepted while their connection waits
	Repeats   uint64 // packets of an already decided connection
	Evicted   uint64 // connections forgotten before their decision
	Malformed uint64 // packets that could not be read (accepted per FailOpen, else dropped)
	NoState   uint64 // packets with no host state to decide with
	Errors    uint64 // failed verdicts or receives
	Conns     int    // connections followed now
}

// Reader reads one queue. Its state (SetState) may change while it runs.
type Reader struct {
	cfg     Config
	log     *slog.Logger
	decider atomic.Pointer[nft.Decider]
	gen     atomic.Uint64 // bumped by SetState

	// mu guards conns and ring (and the classifiers in them): a
	// connection's two directions may come through different queues.
	mu    sync.Mutex
	conns map[connKey]*conn
	ring  []connKey // insertion order, for eviction
	head  int

	ifMu    sync.Mutex
	ifNames map[uint32]string

	packets, decided, waiting, repeats, evicted, malformed, noState, errs atomic.Uint64
	nconns                                                                atomic.Int64
}

type connKey struct {
	src, dst     netip.Addr
	proto        uint8
	sport, dport uint16
}

type conn struct {
	cls     Classifier
	packets int
	next    [2]uint32 // next expected TCP sequence number per direction
	seen    [2]bool
	decided bool
	mark    nft.Mark
	// decidedAt and gen bound how long a decision answers packets of
	// this 5-tuple: only the packets already queued before the kernel
	// took the mark, of the same state, not a later connection that
	// reuses the tuple.
	decidedAt time.Time
	gen       uint64
}

// decisionTTL is how long a decided connection's packets still get its
// verdict from the table: the packets queued before the kernel wrote the
// ct mark come within microseconds.
const decisionTTL = time.Second

// New returns a reader for cfg; Run starts it.
func New(cfg Config) (*Reader, error) {
	if cfg.Queue == 0 {
		cfg.Queue = nft.DefaultL7Queue
	}
	if cfg.Queues <= 0 {
		cfg.Queues = 1
	}
	if int(cfg.Queue)+cfg.Queues-1 > 0xffff {
		return nil, fmt.Errorf("l7: queues %d-%d: beyond queue 65535", cfg.Queue, int(cfg.Queue)+cfg.Queues-1)
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 4096
	}
	if cfg.MaxPackets <= 0 {
		cfg.MaxPackets = 10
	}
	if cfg.Classifier == nil {
		cfg.Classifier = DPI
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Learned == nil {
		cfg.Learned = NewTable(0, 0)
	}
	r := &Reader{cfg: cfg, log: cfg.Log.With("component", "l7", "queue", cfg.Queue),
		conns: make(map[connKey]*conn), ring: make([]connKey, cfg.MaxConns), ifNames: map[uint32]string{}}
	if cfg.IfName == nil {
		r.cfg.IfName = nfq.IfName(cfg.NetNS)
	}
	return r, nil
}

// SetState makes the reader decide with st from now on (the state the
// kernel enforces).
func (r *Reader) SetState(st *nft.HostState) error {
	d, err := nft.NewDecider(st)
	if err != nil {
		return fmt.Errorf("l7: %w", err)
	}
	r.decider.Store(d)
	r.gen.Add(1)
	r.ifMu.Lock()
	clear(r.ifNames) // interfaces may have come and gone with the state
	r.ifMu.Unlock()
	return nil
}

// Learned is the table of what the reader learned per connection, for
// the flow records.
func (r *Reader) Learned() *Table { return r.cfg.Learned }

// Stats returns the counters.
func (r *Reader) Stats() Stats {
	return Stats{
		Packets: r.packets.Load(), Decided: r.decided.Load(), Waiting: r.waiting.Load(),
		Repeats: r.repeats.Load(), Evicted: r.evicted.Load(), Malformed: r.malformed.Load(),
		NoState: r.noState.Load(), Errors: r.errs.Load(), Conns: int(r.nconns.Load()),
	}
}

// Run binds the queues and answers their packets until ctx is done. While
// it runs, the kernel's bypass flag no longer applies: every pending
// payload waits for this reader.
func (r *Reader) Run(ctx context.Context) error {
	flags := uint32(nfqFlagGSO)
	if r.cfg.FailOpen {
		flags |= nfqFlagFailOpen
	}
	qcs := make([]*queueConn, 0, r.cfg.Queues)
	defer func() {
		for _, qc := range qcs {
			qc.Close()
		}
	}()
	for i := range r.cfg.Queues {
		q := r.cfg.Queue + uint16(i)
		qc, err := openQueue(q, r.cfg.NetNS, flags)
		if err != nil {
			return fmt.Errorf("l7: queue %d: %w", q, err)
		}
		qcs = append(qcs, qc)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(qcs))
	var wg sync.WaitGroup
	for i, qc := range qcs {
		wg.Go(func() {
			if errs[i] = r.read(ctx, qc, i); errs[i] != nil {
				cancel() // one queue failing stops the reader
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// read answers the packets of the i-th queue until ctx is done.
func (r *Reader) read(ctx context.Context, qc *queueConn, i int) error {
	// The receive blocks this thread (see nfq.Conn.Receive), which may
	// also be bound to the queue's CPUs. It stays locked: the runtime
	// ends a thread whose goroutine exits locked, so the binding never
	// reaches other goroutines.
	runtime.LockOSThread()
	if r.cfg.Queues > 1 {
		if err := bindToQueueCPUs(i, r.cfg.Queues); err != nil {
			r.log.Debug("cpu affinity", "queue", qc.Queue(), "err", err)
		}
	}
	answer := func(p *queuedPacket) {
		verdict, mark := r.handle(p)
		if err := qc.Verdict(p.ID, verdict, uint32(mark)); err != nil {
			r.errs.Add(1)
			r.log.Debug("verdict", "err", err)
		}
	}
	for ctx.Err() == nil {
		if err := qc.Receive(answer); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.errs.Add(1)
			return fmt.Errorf("l7: queue %d: %w", qc.Queue(), err)
		}
	}
	return nil
}

// bindToQueueCPUs keeps the calling thread on the CPUs whose packets the
// kernel puts in the i-th of n queues (CPU fanout: CPU c queues to c mod
// n).
func bindToQueueCPUs(i, n int) error {
	var all, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return err
	}
	for c := i; c < len(all)*64; c += n { // a CPUSet is an array of 64-bit words
		if all.IsSet(c) {
			set.Set(c)
		}
	}
	if set.Count() == 0 {
		return nil // none of them is ours to run on
	}
	return unix.SchedSetaffinity(0, &set)
}

// handle decides one queued packet: the verdict and the packet mark to
// give it.
func (r *Reader) handle(qp *queuedPacket) (uint32, nft.Mark) {
	r.packets.Add(1)
	mark := nft.Mark(qp.Mark)
	var p packet
	if parsePacket(qp.Payload, &p) != nil {
		r.malformed.Add(1)
		return r.failVerdict(), 0
	}
	reply := mark&nft.MarkL7Reply != 0
	r.mu.Lock()
	defer r.mu.Unlock()
	k := connKey{src: p.src, dst: p.dst, proto: p.proto, sport: p.sport, dport: p.dport}
	if reply {
		k.src, k.dst, k.sport, k.dport = k.dst, k.src, k.dport, k.sport
	}
	srcIf, dstIf := qp.InDev, qp.OutDev // the originator's side, the responder's
	if reply {
		srcIf, dstIf = qp.OutDev, qp.InDev
	}
	return r.decide(k, &p, reply, srcIf, dstIf)
}

func (r *Reader) failVerdict() uint32 {
	if d := r.decider.Load(); d != nil && d.State().L7FailOpen {
		return nfAccept
	}
	return nfDrop
}

// decide feeds one packet of the connection k to its classifier and says
// what to do with it.
func (r *Reader) decide(k connKey, p *packet, reply bool, srcIf, dstIf uint32) (uint32, nft.Mark) {
	c := r.conns[k]
	if c == nil {
		c = r.track(k)
	}
	if c.decided {
		if c.gen == r.gen.Load() && time.Since(c.decidedAt) < decisionTTL && !c.otherConn(p, reply) {
			if p.tcp {
				c.inOrder(dirOf(reply), p) // where it is, for otherConn
			}
			r.repeats.Add(1)
			return nfRepeat, c.mark | nft.MarkL7Verdict
		}
		// A new connection on the same tuple, or a new state: start over.
		*c = conn{}
	}
	dir := dirOf(reply)
	payload := p.payload
	if p.tcp {
		payload = c.inOrder(dir, p)
	}
	var ctx nft.L7Context
	final := false
	if len(payload) > 0 {
		c.packets++
		if c.cls == nil {
			c.cls = r.cfg.Classifier(k.proto)
		}
		ctx, final = c.cls.Feed(!reply, payload)
	} else if !p.tcp || p.fin {
		// Nothing to read in it: a protocol the classifier cannot see
		// into, or the end of the connection.
		final = true
	}
	if !final && c.packets < r.cfg.MaxPackets {
		r.waiting.Add(1)
		return nfAccept, 0
	}
	if c.cls != nil {
		ctx = c.cls.Finish()
	}
	d := r.decider.Load()
	if d == nil {
		r.noState.Add(1)
		return r.failVerdict(), 0
	}
	now := time.Now()
	r.publish(k, c.cls, ctx, now)
	if rel, ok := c.cls.(interface{ Release() }); ok {
		rel.Release()
	}
	c.decided, c.cls, c.decidedAt, c.gen = true, nil, now, r.gen.Load()
	c.mark = r.final(d, k, srcIf, dstIf, ctx)
	r.decided.Add(1)
	return nfRepeat, c.mark | nft.MarkL7Verdict
}

// ServerNamer is a Classifier that also knows the server's name (TLS SNI,
// HTTP Host, DNS question).
type ServerNamer interface {
	ServerName() string
}

// publish puts what was learned of a connection with an application into
// the Learned table (once per connection, so the allocation is no cost per
// packet).
func (r *Reader) publish(k connKey, cls Classifier, ctx nft.L7Context, now time.Time) {
	if ctx.App == "" {
		return
	}
	l := Learned{App: ctx.App, TLSVersion: ctx.TLSVersion, At: now}
	if sn, ok := cls.(ServerNamer); ok {
		l.ServerName = sn.ServerName()
	}
	r.cfg.Learned.Put(Tuple{Src: k.src, Dst: k.dst, Proto: k.proto, SPort: k.sport, DPort: k.dport}, l)
}

// final runs the walk of both points as the kernel would with the
// connection's L7 context known, and combines them as the kernel does.
func (r *Reader) final(d *nft.Decider, k connKey, srcIf, dstIf uint32, ctx nft.L7Context) nft.Mark {
	port := k.dport
	var eg, in nft.Mark
	we, hasE := d.Workload(r.ifName(srcIf))
	wi, hasI := d.Workload(r.ifName(dstIf))
	if hasE {
		eg = d.Point(we, false, nft.Conn{Peer: k.dst, Proto: k.proto, Port: port}, &ctx)
	}
	if hasI {
		in = d.Point(wi, true, nft.Conn{Peer: k.src, Proto: k.proto, Port: port, SrcPort: k.sport}, &ctx)
	}
	return nft.Combine(eg, in, hasE, hasI)
}

// otherConn reports whether a TCP packet's sequence number is far from
// where this connection was: a new connection that reuses the tuple.
func (c *conn) otherConn(p *packet, reply bool) bool {
	dir := dirOf(reply)
	if !p.tcp || !c.seen[dir] {
		return false
	}
	d := int32(p.seq - c.next[dir])
	return d > 1<<20 || d < -(1<<20)
}

func dirOf(reply bool) int {
	if reply {
		return 1
	}
	return 0
}

// inOrder returns the part of a TCP payload the classifier has not seen,
// in sequence order; a retransmission gives nothing. A gap (a lost or
// reordered segment) is passed over: the classifier sees what follows.
func (c *conn) inOrder(dir int, p *packet) []byte {
	b := p.payload
	seq := p.seq
	if p.syn {
		seq++
	}
	if !c.seen[dir] {
		c.seen[dir] = true
		c.next[dir] = seq + uint32(len(b))
		return b
	}
	d := int32(seq - c.next[dir])
	switch {
	case d < 0 && int(-d) >= len(b):
		return nil
	case d < 0:
		b = b[-d:]
	}
	c.next[dir] = seq + uint32(len(p.payload))
	return b
}

// track starts following a connection, forgetting the oldest beyond
// MaxConns.
func (r *Reader) track(k connKey) *conn {
	if old := r.ring[r.head]; old.proto != 0 || old.src.IsValid() {
		if oc := r.conns[old]; oc != nil {
			if !oc.decided {
				r.evicted.Add(1)
			}
			if rel, ok := oc.cls.(interface{ Release() }); ok {
				rel.Release()
			}
			delete(r.conns, old)
		}
	}
	r.ring[r.head] = k
	r.head = (r.head + 1) % len(r.ring)
	c := &conn{}
	r.conns[k] = c
	r.nconns.Store(int64(len(r.conns)))
	return c
}

func (r *Reader) ifName(index uint32) string {
	if index == 0 {
		return ""
	}
	r.ifMu.Lock()
	name, ok := r.ifNames[index]
	r.ifMu.Unlock()
	if ok {
		return name
	}
	name, err := r.cfg.IfName(index)
	if err != nil {
		r.log.Debug("interface name", "index", index, "err", err)
		return ""
	}
	r.ifMu.Lock()
	r.ifNames[index] = name
	r.ifMu.Unlock()
	return name
}
