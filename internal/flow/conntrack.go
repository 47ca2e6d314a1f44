package flow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
)

// CollectorConfig configures a Collector. Zero values take defaults.
type CollectorConfig struct {
	// Host names this host in every record and record ID. Required.
	Host string
	// NetNS is a file descriptor of the network namespace whose conntrack
	// table is read; 0 means the caller's.
	NetNS int
	// DumpInterval is how often the table is dumped to report long flows.
	// Default 10s.
	DumpInterval time.Duration
	// Local reports whether an address is a workload of this host; only
	// connections with a local end are reported. Nil: every address is,
	// when Workload is nil too, else those Workload names.
	Local func(netip.Addr) bool
	// Workload names the local workload that has an address, "" if none.
	// May be nil.
	Workload func(netip.Addr) string
	// DecodeMark reads the rule id and verdict out of a conntrack mark;
	// connections whose rule id is 0 are not Bulkhead's and are skipped.
	// Required.
	DecodeMark MarkDecoder
	// DumpMark and DumpMask, when DumpMask is not 0, make the kernel dump
	// only connections whose mark&DumpMask == DumpMark (e.g. the data
	// plane's "allow" action bits), which saves copying the connections
	// Bulkhead did not decide. The rule id test still applies.
	DumpMark, DumpMask uint32
	// ReadBuffer is the event socket's receive buffer in bytes; events
	// beyond it are lost (and counted). Default 8 MiB.
	ReadBuffer int
	// Annotate, when set, adds to each record what another part of the
	// agent learned of its connection (the L7 reader's application, TLS
	// version and server name), just before the record is buffered. It
	// runs on the collector's goroutine and must not block for long.
	Annotate func(*Record)
	Log      *slog.Logger
}

// Defaults of the collectors' configurations.
const (
	DefaultDumpInterval = 10 * time.Second
	DefaultReadBuffer   = 8 << 20
	DefaultDropWindow   = 5 * time.Second
	DefaultDropKeys     = 4096
	DefaultSnapLen      = 128
)

func (c *CollectorConfig) check() error {
	if c.Host == "" {
		return errors.New("flow: collector: host must not be empty")
	}
	if c.DecodeMark == nil {
		return errors.New("flow: collector: a mark decoder is required")
	}
	if c.DumpInterval <= 0 {
		c.DumpInterval = DefaultDumpInterval
	}
	if c.ReadBuffer <= 0 {
		c.ReadBuffer = DefaultReadBuffer
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Local == nil && c.Workload != nil {
		w := c.Workload
		c.Local = func(a netip.Addr) bool { return w(a) != "" }
	}
	return nil
}

// Collector turns one network namespace's conntrack table into flow
// records: it follows NEW and DESTROY events and dumps the table every
// DumpInterval.
//
// A connection with our mark and a local end is reported as one KindUpdate
// per dump in which its counters moved (totals so far) and one KindEnd when
// the DESTROY event arrives (final totals). A connection that disappears
// without a DESTROY event (lost when the event socket overflowed) is ended
// at the second dump that misses it, with the totals of its last dump.
//
// Counters and start times need net.netfilter.nf_conntrack_acct=1 and
// nf_conntrack_timestamp=1 in the namespace; without timestamps the start
// is when the collector first saw the connection.
type Collector struct {
	cfg   CollectorConfig
	out   *Buffer
	ready chan struct{}

	// open is only touched by Run's goroutine.
	open    map[uint32]*conn
	dumpSeq uint64

	mu    sync.Mutex
	stats CollectorStats
}

// conn is what the collector remembers of one open connection.
type conn struct {
	start     time.Time
	fromClock bool // start is our first sight, not the kernel's timestamp
	last      Record
	emitted   bool
	listedAt  uint64 // the last dump that listed it
	missed    bool
	missedAt  time.Time
}

// CollectorStats are the collector's counters.
type CollectorStats struct {
	Events  uint64 // NEW and DESTROY events read
	Dumps   uint64
	Updates uint64 // records produced, by kind
	Ends    uint64
	// Vanished counts connections ended because two dumps missed them
	// and no DESTROY event came.
	Vanished uint64
	// Skipped counts events of connections that are not ours (no rule id)
	// or touch no local workload.
	Skipped uint64
	// EventErrors counts failures of the event socket (ENOBUFS when the
	// kernel outran us); each one re-subscribes and dumps at once.
	EventErrors uint64
	DumpErrors  uint64
	// NoTimestamp counts connections without a kernel start time
	// (nf_conntrack_timestamp is off).
	NoTimestamp uint64
	Open        int
}

// NewCollector checks cfg and returns a collector that pushes to out.
func NewCollector(cfg CollectorConfig, out *Buffer) (*Collector, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &Collector{cfg: cfg, out: out, ready: make(chan struct{}), open: make(map[uint32]*conn)}, nil
}

// Ready is closed once the collector listens for events and has dumped
// the table once.
func (c *Collector) Ready() <-chan struct{} { return c.ready }

// Stats returns the collector's counters.
func (c *Collector) Stats() CollectorStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

func (c *Collector) count(f func(s *CollectorStats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}

// events is one subscription to conntrack events.
type events struct {
	conn *conntrack.Conn
	ch   chan conntrack.Event
	errs chan error
}

func (c *Collector) subscribe() (*events, error) {
	cn, err := conntrack.Dial(&netlink.Config{NetNS: c.cfg.NetNS})
	if err != nil {
		return nil, fmt.Errorf("flow: conntrack events: %w", err)
	}
	if err := cn.SetReadBuffer(c.cfg.ReadBuffer); err != nil {
		c.cfg.Log.Warn("flow: conntrack event buffer", "bytes", c.cfg.ReadBuffer, "err", err)
	}
	ev := &events{conn: cn, ch: make(chan conntrack.Event, 4096)}
	// One worker keeps a connection's NEW before its DESTROY.
	ev.errs, err = cn.Listen(ev.ch, 1, []netfilter.NetlinkGroup{netfilter.GroupCTNew, netfilter.GroupCTDestroy})
	if err != nil {
		cn.Close()
		return nil, fmt.Errorf("flow: conntrack events: subscribe: %w", err)
	}
	return ev, nil
}

// close stops the worker, which may be blocked handing us an event.
func (ev *events) close() {
	if ev == nil {
		return
	}
	done := make(chan struct{})
	go func() { ev.conn.Close(); close(done) }()
	for {
		select {
		case <-ev.ch:
		case <-ev.errs:
		case <-done:
			return
		}
	}
}

// Run collects until ctx is done. It returns an error only if it cannot
// start; later failures are counted, logged and recovered from.
func (c *Collector) Run(ctx context.Context) error {
	dumper, err := conntrack.Dial(&netlink.Config{NetNS: c.cfg.NetNS})
	if err != nil {
		return fmt.Errorf("flow: conntrack: %w", err)
	}
	defer dumper.Close()
	ev, err := c.subscribe()
	if err != nil {
		return err
	}
	defer func() { ev.close() }()
	c.dump(dumper)
	close(c.ready)

	tick := time.NewTicker(c.cfg.DumpInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-ev.ch:
			c.event(e)
		case err := <-ev.errs:
			var errs uint64
			c.count(func(s *CollectorStats) { s.EventErrors++; errs = s.EventErrors })
			if errs&(errs-1) == 0 {
				c.cfg.Log.Warn("flow: conntrack events lost; re-subscribing", "errors", errs, "err", err)
			}
			ev.close()
			for {
				if ev, err = c.subscribe(); err == nil {
					break
				}
				c.cfg.Log.Warn("flow: conntrack re-subscribe failed", "err", err)
				select {
				case <-ctx.Done():
					ev = nil
					return nil
				case <-time.After(time.Second):
				}
			}
			c.dump(dumper)
		case <-tick.C:
			c.dump(dumper)
		}
	}
}

// ours reports whether a connection is reported, and with which rule.
func (c *Collector) ours(f *conntrack.Flow) (rule uint32, v Verdict, ok bool) {
	rule, v = c.cfg.DecodeMark(f.Mark)
	if rule == 0 {
		return 0, 0, false
	}
	if c.cfg.Local != nil && !c.cfg.Local(f.TupleOrig.IP.SourceAddress) && !c.cfg.Local(f.TupleOrig.IP.DestinationAddress) {
		return 0, 0, false
	}
	return rule, v, true
}

func (c *Collector) event(e conntrack.Event) { c.eventAt(e, time.Now()) }

func (c *Collector) eventAt(e conntrack.Event, now time.Time) {
	c.count(func(s *CollectorStats) { s.Events++ })
	if e.Flow == nil {
		return
	}
	f := e.Flow
	rule, v, ok := c.ours(f)
	if !ok {
		c.count(func(s *CollectorStats) { s.Skipped++ })
		return
	}
	switch e.Type {
	case conntrack.EventNew:
		if _, known := c.open[f.ID]; !known {
			cn := c.track(f, now)
			cn.last = c.record(f, cn, KindUpdate, rule, v, now)
		}
	case conntrack.EventDestroy:
		cn, known := c.open[f.ID]
		if !known {
			cn = c.track(f, now)
		}
		delete(c.open, f.ID)
		r := c.record(f, cn, KindEnd, rule, v, now)
		// Keep the largest totals: a DESTROY without counters (acct
		// off) must not undo what a dump saw.
		if cn.emitted {
			r.SrcBytes, r.SrcPackets = max(r.SrcBytes, cn.last.SrcBytes), max(r.SrcPackets, cn.last.SrcPackets)
			r.DstBytes, r.DstPackets = max(r.DstBytes, cn.last.DstBytes), max(r.DstPackets, cn.last.DstPackets)
		}
		c.out.Push(r)
		c.count(func(s *CollectorStats) { s.Ends++; s.Open = len(c.open) })
	}
}

// track starts remembering a connection.
func (c *Collector) track(f *conntrack.Flow, now time.Time) *conn {
	cn := &conn{start: f.Timestamp.Start}
	if cn.start.IsZero() {
		cn.start, cn.fromClock = now, true
	}
	c.open[f.ID] = cn
	return cn
}

func (c *Collector) record(f *conntrack.Flow, cn *conn, k Kind, rule uint32, v Verdict, now time.Time) Record {
	// A NEW event carries no timestamp; the first dump or the DESTROY
	// does, and fixes the start before any record has gone out.
	if cn.fromClock && !cn.emitted && !f.Timestamp.Start.IsZero() {
		cn.start, cn.fromClock = f.Timestamp.Start, false
	}
	o := &f.TupleOrig
	r := Record{
		Kind:       k,
		Host:       c.cfg.Host,
		Src:        o.IP.SourceAddress.Unmap(),
		Dst:        o.IP.DestinationAddress.Unmap(),
		Proto:      o.Proto.Protocol,
		SrcBytes:   f.CountersOrig.Bytes,
		SrcPackets: f.CountersOrig.Packets,
		DstBytes:   f.CountersReply.Bytes,
		DstPackets: f.CountersReply.Packets,
		Start:      cn.start,
		Seen:       now,
		RuleID:     rule,
		Verdict:    v,
	}
	if cn.emitted {
		r.ID = cn.last.ID
	} else {
		r.ID = ConnID(c.cfg.Host, f.ID, cn.start)
	}
	if o.Proto.ICMPv4 || o.Proto.ICMPv6 || r.IsICMP() {
		r.ICMPType, r.ICMPCode = o.Proto.ICMPType, o.Proto.ICMPCode
	} else {
		r.SrcPort, r.DstPort = o.Proto.SourcePort, o.Proto.DestinationPort
	}
	if k == KindEnd {
		r.End = f.Timestamp.Stop
		if r.End.IsZero() {
			r.End = now
		}
		r.Seen = r.End
	}
	if c.cfg.Workload != nil {
		r.SrcWorkload, r.DstWorkload = c.cfg.Workload(r.Src), c.cfg.Workload(r.Dst)
	}
	if c.cfg.Annotate != nil {
		c.cfg.Annotate(&r)
	}
	return r
}

// dump reads the whole table: an update for every connection of ours whose
// counters moved, and an end for those that vanished unnoticed.
func (c *Collector) dump(d *conntrack.Conn) {
	var flows []conntrack.Flow
	var err error
	if c.cfg.DumpMask != 0 {
		flows, err = d.DumpFilter(conntrack.NewFilter().Mark(c.cfg.DumpMark).MarkMask(c.cfg.DumpMask), nil)
	} else {
		flows, err = d.Dump(nil)
	}
	now := time.Now()
	if err != nil {
		var n uint64
		c.count(func(s *CollectorStats) { s.DumpErrors++; n = s.DumpErrors })
		if n&(n-1) == 0 {
			c.cfg.Log.Warn("flow: conntrack dump failed", "errors", n, "err", err)
		}
		return
	}
	c.reconcile(flows, now)
}

// reconcile takes one dump of the table.
func (c *Collector) reconcile(flows []conntrack.Flow, now time.Time) {
	c.dumpSeq++
	var updates, skipped, noTS uint64
	out := make([]Record, 0, 64)
	for i := range flows {
		f := &flows[i]
		rule, v, ok := c.ours(f)
		if !ok {
			skipped++
			continue
		}
		if f.Timestamp.Start.IsZero() {
			noTS++
		}
		cn, known := c.open[f.ID]
		if !known {
			cn = c.track(f, now)
		}
		cn.listedAt, cn.missed = c.dumpSeq, false
		r := c.record(f, cn, KindUpdate, rule, v, now)
		if cn.emitted && r.SrcPackets == cn.last.SrcPackets && r.DstPackets == cn.last.DstPackets && r.SrcBytes == cn.last.SrcBytes && r.DstBytes == cn.last.DstBytes {
			continue
		}
		cn.last, cn.emitted = r, true
		out = append(out, r)
		updates++
	}
	var vanished uint64
	for id, cn := range c.open {
		if cn.listedAt == c.dumpSeq {
			continue
		}
		if !cn.missed {
			cn.missed, cn.missedAt = true, now
			continue
		}
		r := cn.last
		r.Kind, r.End, r.Seen = KindEnd, cn.missedAt, cn.missedAt
		out = append(out, r)
		delete(c.open, id)
		vanished++
	}
	c.out.Push(out...)
	c.count(func(s *CollectorStats) {
		s.Dumps++
		s.Updates += updates
		s.Ends += vanished
		s.Vanished += vanished
		s.Skipped += skipped
		s.NoTimestamp += noTS
		s.Open = len(c.open)
	})
}
