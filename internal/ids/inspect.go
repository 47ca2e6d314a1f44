package ids

import (
	"hash/fnv"
	"net/netip"
	"slices"
	"time"

	"github.com/bulkhead/bulkhead/internal/ids/applayer"
	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/ids/stream"
)

// InspectorConfig configures an Inspector. Zero fields take the defaults.
type InspectorConfig struct {
	// OnAlert receives every alert, synchronously, in packet order.
	OnAlert func(*Alert)
	// Interface is the alerts' in_iface.
	Interface string
	// MaxFlows bounds the flow table (65536); the least recently seen
	// flow is evicted when it is full.
	MaxFlows int
	// Idle timeouts: TCP (10 min; 30 s after FIN/RST), other (2 min).
	TCPIdle, ClosedIdle, OtherIdle time.Duration
	// Stream bounds each TCP connection's reassembly.
	Stream stream.Config
	// MaxThresholds bounds the threshold/detection_filter table (65536).
	MaxThresholds int
}

func (c InspectorConfig) withDefaults() InspectorConfig {
	if c.MaxFlows <= 0 {
		c.MaxFlows = 65536
	}
	if c.TCPIdle <= 0 {
		c.TCPIdle = 10 * time.Minute
	}
	if c.ClosedIdle <= 0 {
		c.ClosedIdle = 30 * time.Second
	}
	if c.OtherIdle <= 0 {
		c.OtherIdle = 2 * time.Minute
	}
	if c.MaxThresholds <= 0 {
		c.MaxThresholds = 65536
	}
	return c
}

// InspectorStats counts what an Inspector saw.
type InspectorStats struct {
	Packets, Bytes uint64
	Invalid        uint64 // packets that did not decode
	Fragments      uint64 // IP fragments (inspected by ip rules only)
	Flows          uint64 // flows created
	Evicted        uint64 // flows evicted because the table was full
	Expired        uint64 // flows removed after their idle timeout
	Alerts         uint64
	Dropped        uint64 // packets given VerdictDrop/VerdictReject
	Anomalies      uint64 // TCP segments with a reassembly anomaly
	ThresholdFull  uint64 // threshold entries not tracked because the table was full
}

// windowSize is how much of each direction's stream is kept to match a
// pattern that spans two deliveries.
const windowSize = 2048

// Inspector runs an Engine over packets: one per goroutine, with its own
// flow table. Packet takes the engine per call, so an agent can pick one
// per workload and swap it; flows (reassembly, app layer, flowbits)
// continue across a swap.
type Inspector struct {
	cfg   InspectorConfig
	flows map[flowKey]*flow
	// LRU list of flows, most recently seen at head.
	head, tail *flow
	free       []*flow
	stats      InspectorStats
	thresh     thresholds

	pkt   packet
	fired []int32 // rules that fired in the current evaluation
	// txFired are the rules that fired on the current transaction, kept
	// across its continuations (tls.certs: one Tx per certificate), so a
	// rule alerts once per transaction as Suricata's do.
	txFired []int32
	txFlow  *flow
	txID    uint64
	cands   candSet
	alerted candSet
	msc     matchScratch
	scratch []byte

	// The packet being inspected, for the stream and app-layer callbacks.
	cur struct {
		ts      time.Time
		e       *Engine
		f       *flow
		p       *packet
		inline  bool
		verdict Verdict
	}
	deliverFn func(stream.Dir, uint64, []byte)
	emitFn    func(*applayer.Tx)
}

type flowKey struct {
	proto uint8
	a, b  netip.AddrPort
}

type flow struct {
	key            flowKey
	client, server netip.AddrPort
	proto          uint8
	id             uint64
	start, last    time.Time
	pkts, bytes    [2]uint64
	seen           [2]bool
	synSeen        bool
	synAckSeen     bool
	established    bool
	closing        bool
	blocked        bool
	passed         bool
	appClosed      bool
	tcp            stream.Conn
	app            applayer.Conn
	win            [2][]byte // the end of each direction's stream
	winEnd         [2]uint64 // stream offset after win
	held           [2]int    // bytes at the end of win not inspected yet
	holdOff        bool      // the protocol stays unknown: inspect at once
	marks          []streamMark
	eng            *Engine
	acState        [2]int32 // the stream prefilter's state after the inspected bytes
	protoSeen      [2]bool  // the stream was inspected knowing the app protocol
	pending        [2][]pendingRule
	bits           []string
	prev, next     *flow
}

// NewInspector returns an Inspector with an empty flow table.
func NewInspector(cfg InspectorConfig) *Inspector {
	i := &Inspector{cfg: cfg.withDefaults(), flows: map[flowKey]*flow{}}
	i.thresh.max = i.cfg.MaxThresholds
	i.deliverFn = i.deliver
	i.emitFn = i.emit
	return i
}

// Stats returns the counters so far.
func (i *Inspector) Stats() InspectorStats { return i.stats }

// Flows is the number of flows in the table.
func (i *Inspector) Flows() int { return len(i.flows) }

// Packet inspects one IPv4 or IPv6 packet (from the IP header) seen at ts
// with engine e (nil: only the flow state is kept). inline says the
// packet waits for the verdict (NFQUEUE): a matching drop/reject rule then
// drops/rejects it and blocks its flow, and a TCP segment that rewrites
// bytes already received with different ones is dropped. Otherwise the
// verdict is always VerdictPass and drop rules alert as "allowed".
//
// A segment that fills a gap is the one that completes a match spanning
// it: inline, that segment is dropped; the bytes after the gap that came
// earlier were already let through, as with any inline IPS that
// reassembles.
func (i *Inspector) Packet(ts time.Time, pkt []byte, e *Engine, inline bool) Verdict {
	i.stats.Packets++
	i.stats.Bytes += uint64(len(pkt))
	p := &i.pkt
	if !decode(pkt, p) {
		i.stats.Invalid++
		return VerdictPass
	}
	if p.fragment {
		i.stats.Fragments++
	}
	f := i.lookup(ts, p)
	dir := stream.ToServer
	if netip.AddrPortFrom(p.src, p.sport) != f.client {
		dir = stream.ToClient
	}
	f.pkts[dir]++
	f.bytes[dir] += uint64(p.ipLen)
	f.seen[dir] = true
	f.last = ts
	i.trackState(f, dir, p)
	if f.blocked && inline {
		i.stats.Dropped++
		return VerdictDrop
	}
	if f.passed || e == nil {
		i.feedOnly(f, dir, p)
		return VerdictPass
	}

	i.cur.ts, i.cur.e, i.cur.f, i.cur.p, i.cur.inline, i.cur.verdict = ts, e, f, p, inline, VerdictPass
	i.alerted.reset(len(e.rules))
	if f.eng != e {
		f.useEngine(e)
	}
	i.inspectPacket(dir)
	if !f.passed && i.cur.verdict == VerdictPass && !p.fragment {
		switch p.proto {
		case protoTCP:
			an := f.tcp.Segment(dir, p.seq, p.tcpFlags, p.payload, i.deliverFn)
			i.releaseHeld(f)
			if !f.appClosed && f.tcp.Closed(stream.ToServer) && f.tcp.Closed(stream.ToClient) {
				f.appClosed = true
				f.app.Close(i.emitFn)
			}
			if an != 0 {
				i.stats.Anomalies++
				if inline && an&stream.AnomalyOverlap != 0 && i.cur.verdict == VerdictPass {
					i.cur.verdict = VerdictDrop
				}
			}
		case protoUDP:
			if len(p.payload) > 0 {
				f.app.Datagram(dir, p.payload, i.emitFn)
			}
		}
	}
	v := i.cur.verdict
	i.cur.f, i.cur.p, i.cur.e = nil, nil, nil
	if v != VerdictPass {
		i.stats.Dropped++
	}
	return v
}

// feedOnly keeps reassembly and the app layer going without rules (a
// passed flow, or no engine), so that a later engine sees a consistent
// stream.
func (i *Inspector) feedOnly(f *flow, dir stream.Dir, p *packet) {
	if f.passed || p.fragment {
		return
	}
	i.cur.f, i.cur.e, i.cur.p = f, nil, p
	switch p.proto {
	case protoTCP:
		f.tcp.Segment(dir, p.seq, p.tcpFlags, p.payload, i.deliverFn)
	case protoUDP:
		if len(p.payload) > 0 {
			f.app.Datagram(dir, p.payload, i.emitFn)
		}
	}
	i.cur.f, i.cur.p = nil, nil
}

// CloseAll ends every flow at ts, oldest first, inspecting with e the
// transactions still open (a response read until the connection's
// close): the end of a capture, or of an inspector.
func (i *Inspector) CloseAll(ts time.Time, e *Engine) {
	for i.tail != nil {
		f := i.tail
		i.finish(f, ts, e)
		i.remove(f)
	}
}

// finish ends a flow's inspection with e: the bytes held in detect mode
// are inspected and the app layer's open transactions emitted. Flows
// that expire or are evicted are finished with their last engine.
func (i *Inspector) finish(f *flow, ts time.Time, e *Engine) {
	if f.appClosed || f.passed || e == nil {
		return
	}
	i.cur.ts, i.cur.e, i.cur.f, i.cur.p, i.cur.inline, i.cur.verdict = ts, e, f, nil, false, VerdictPass
	i.alerted.reset(len(e.rules))
	if f.eng != e {
		f.useEngine(e)
	}
	f.holdOff = true
	i.releaseHeld(f)
	f.appClosed = true
	f.app.Close(i.emitFn)
	i.cur.f, i.cur.e = nil, nil
}

// trackState follows the TCP handshake and the end of flows.
func (i *Inspector) trackState(f *flow, dir stream.Dir, p *packet) {
	if p.proto != protoTCP {
		if f.seen[0] && f.seen[1] {
			f.established = true
		}
		return
	}
	const fin, syn, rst, ack = 0x01, 0x02, 0x04, 0x10
	fl := p.tcpFlags
	switch {
	case fl&syn != 0 && fl&ack == 0 && dir == stream.ToServer:
		f.synSeen = true
	case fl&syn != 0 && fl&ack != 0 && dir == stream.ToClient:
		f.synAckSeen = true
	case fl&ack != 0 && dir == stream.ToServer && f.synSeen && f.synAckSeen:
		f.established = true
	}
	if !f.synSeen && f.seen[0] && f.seen[1] {
		f.established = true // picked up mid-stream
	}
	if fl&(fin|rst) != 0 {
		f.closing = true
	}
}

// lookup finds or creates the packet's flow, expiring idle flows and
// evicting the least recently seen one when the table is full.
func (i *Inspector) lookup(ts time.Time, p *packet) *flow {
	s, d := netip.AddrPortFrom(p.src, p.sport), netip.AddrPortFrom(p.dst, p.dport)
	k := flowKey{proto: p.proto, a: s, b: d}
	if d.Addr().Less(s.Addr()) || (d.Addr() == s.Addr() && p.dport < p.sport) {
		k.a, k.b = d, s
	}
	i.expire(ts)
	if f := i.flows[k]; f != nil {
		// A new SYN on a closed connection starts a new flow.
		if !(p.proto == protoTCP && p.tcpFlags&0x12 == 0x02 && f.closing && f.tcp.Closed(0) && f.tcp.Closed(1)) {
			i.touch(f)
			return f
		}
		i.finish(f, f.last, f.eng)
		i.remove(f)
	}
	if len(i.flows) >= i.cfg.MaxFlows && i.tail != nil {
		i.finish(i.tail, i.tail.last, i.tail.eng)
		i.remove(i.tail)
		i.stats.Evicted++
	}
	var f *flow
	if n := len(i.free); n > 0 {
		f = i.free[n-1]
		i.free = i.free[:n-1]
	} else {
		f = new(flow)
	}
	tcp, app, win, bits, marks, pend := f.tcp, f.app, f.win, f.bits, f.marks, f.pending
	*f = flow{key: k, proto: p.proto, start: ts, last: ts, client: s, server: d, tcp: tcp, app: app}
	f.win[0], f.win[1], f.bits, f.marks = win[0][:0], win[1][:0], bits[:0], marks[:0]
	f.pending[0], f.pending[1] = pend[0][:0], pend[1][:0]
	if p.proto == protoTCP && p.tcpFlags&0x12 == 0x12 {
		f.client, f.server = d, s // the capture began after the SYN
	}
	if p.proto == protoTCP {
		f.tcp.Reset(i.cfg.Stream)
	}
	if p.proto == protoTCP || p.proto == protoUDP {
		f.app.Init(p.proto, f.client.Port(), f.server.Port())
	}
	h := fnv.New64a()
	var b [8]byte
	for _, ap := range []netip.AddrPort{f.client, f.server} {
		a16 := ap.Addr().As16()
		h.Write(a16[:])
		b[0], b[1] = byte(ap.Port()>>8), byte(ap.Port())
		h.Write(b[:2])
	}
	ns := ts.UnixNano()
	for j := range b {
		b[j] = byte(ns >> (8 * j))
	}
	h.Write(b[:])
	f.id = h.Sum64() & (1<<52 - 1)
	i.flows[k] = f
	i.pushFront(f)
	i.stats.Flows++
	return f
}

func (i *Inspector) idle(f *flow) time.Duration {
	switch {
	case f.proto == protoTCP && f.closing:
		return i.cfg.ClosedIdle
	case f.proto == protoTCP:
		return i.cfg.TCPIdle
	}
	return i.cfg.OtherIdle
}

// expire removes a few flows idle for longer than their timeout, from the
// least recently seen end.
func (i *Inspector) expire(ts time.Time) {
	for n := 0; n < 4 && i.tail != nil; n++ {
		f := i.tail
		if ts.Sub(f.last) <= i.idle(f) {
			// Closed TCP flows time out sooner than the tail; a
			// bounded check of the tail is enough to keep the table
			// from filling with dead flows.
			return
		}
		i.finish(f, f.last, f.eng)
		i.remove(f)
		i.stats.Expired++
	}
}

func (i *Inspector) remove(f *flow) {
	if !f.appClosed {
		f.appClosed = true
		f.app.Close(func(*applayer.Tx) {})
	}
	delete(i.flows, f.key)
	if f.prev != nil {
		f.prev.next = f.next
	} else {
		i.head = f.next
	}
	if f.next != nil {
		f.next.prev = f.prev
	} else {
		i.tail = f.prev
	}
	f.prev, f.next = nil, nil
	if len(i.free) < 256 {
		i.free = append(i.free, f)
	}
}

func (i *Inspector) pushFront(f *flow) {
	f.prev, f.next = nil, i.head
	if i.head != nil {
		i.head.prev = f
	}
	i.head = f
	if i.tail == nil {
		i.tail = f
	}
}

func (i *Inspector) touch(f *flow) {
	if i.head == f {
		return
	}
	f.prev.next = f.next
	if f.next != nil {
		f.next.prev = f.prev
	} else {
		i.tail = f.prev
	}
	i.pushFront(f)
}

// inspectPacket runs the packet-context rules on the packet.
func (i *Inspector) inspectPacket(dir stream.Dir) {
	e, p := i.cur.e, i.cur.p
	i.cands.reset(len(e.rules))
	if !p.fragment && len(p.payload) > 0 {
		slot := transportSlot(p.proto)
		if slot == 0 {
			slot = 3
		}
		e.pktPF[slot].scan(p.payload, &i.cands)
	}
	e.hdr.candidates(p, &i.cands)
	i.evaluate(nil, i.cands.list, ctxPacket, dir, p.payload, 0, -1, nil)
}

// deliver receives in-order TCP bytes from the reassembly: the app layer
// first (so that a rule on an http flow knows it is one), then the stream
// rules over the kept window plus the new bytes.
//
// Inline, every delivery is inspected at once: the verdict cannot wait.
// In detect mode, as Suricata's IDS mode inspects the raw stream when the
// app layer has made progress, bytes are held while the protocol is not
// yet identified: until it is, the other side answers, holdMax bytes
// wait or the direction ends. Then an "alert http" content rule sees the
// stream from its start and alerts carry the app_proto.
func (i *Inspector) deliver(dir stream.Dir, off uint64, data []byte) {
	f := i.cur.f
	f.appendWindow(dir, data)
	f.app.Stream(dir, data, i.emitFn)
	e := i.cur.e
	if e == nil || f.passed {
		f.held[dir] = 0
		f.trimWindow(dir)
		return
	}
	if f.held[dir^1] > 0 {
		i.inspectStream(f, dir^1) // the other side answered
	}
	if i.holding(f, dir) {
		return
	}
	i.inspectStream(f, dir)
}

// holdMax bounds the bytes held per direction while the app layer
// identifies the protocol.
const holdMax = 4096

func (i *Inspector) holding(f *flow, dir stream.Dir) bool {
	if i.cur.inline || f.holdOff || f.app.Proto() != 0 {
		return false
	}
	if f.held[dir] > holdMax || f.tcp.Closed(dir) {
		f.holdOff = true
		return false
	}
	return true
}

// releaseHeld inspects what a direction holds once the hold ends (the
// protocol was identified, or the flow ends).
func (i *Inspector) releaseHeld(f *flow) {
	for d := stream.ToServer; d <= stream.ToClient; d++ {
		if f.held[d] > 0 && i.cur.e != nil && !f.passed && !i.holding(f, d) {
			i.inspectStream(f, d)
		}
	}
}

// inspectStream runs the stream rules on the window, reporting only
// matches that reach into the bytes not inspected before. A match that
// overlaps or touches the previous alert of the same rule in the same
// direction is the same event (a pattern repeated in a row, such as
// "../../../", seen byte by byte), and is not reported again.
//
// The prefilter scans each byte once: its state is carried from one
// delivery to the next (so a pattern split across them is found), and a
// rule whose fast pattern was seen but which did not match stays pending
// while that pattern is in the window, since its other contents may
// arrive later.
func (i *Inspector) inspectStream(f *flow, dir stream.Dir) {
	e := i.cur.e
	buf := f.win[dir]
	base := int(f.winEnd[dir]) - len(buf)
	minEnd := len(buf) - f.held[dir]
	from, state := minEnd, f.acState[dir]
	if !f.protoSeen[dir] && f.app.Proto() != 0 {
		// The protocol was identified just now (inline, where nothing is
		// held): the window is inspected again from its start, so that
		// an "alert http" rule sees the bytes that identified it.
		// Matches already reported are the same events (marks).
		f.protoSeen[dir] = true
		minEnd, from, state = 0, 0, 0
	}
	cr := &e.stream
	i.cands.reset(len(e.rules))
	f.acState[dir] = cr.pf[rules.BufPayload].scanFrom(state, buf[from:], uint64(base+from), &i.cands)
	pend := f.pending[dir][:0]
	for _, pd := range f.pending[dir] {
		if pd.fpEnd > uint64(base) && i.cands.stamp[pd.rule] != i.cands.gen {
			i.cands.add(pd.rule)
			i.cands.pos[pd.rule] = pd.fpEnd
		}
	}
	i.fired = i.fired[:0]
	i.evaluate(cr.always, i.cands.list, ctxStream, dir, buf, base, minEnd, nil)
	// Keep the candidates that did not fire, their pattern still in view.
	for _, r := range i.cands.list {
		if slices.Contains(i.fired, r) {
			continue
		}
		if len(pend) == maxPending {
			pend = append(pend[:0], pend[1:]...)
		}
		pend = append(pend, pendingRule{rule: r, fpEnd: i.cands.pos[r]})
	}
	f.pending[dir] = pend
	f.held[dir] = 0
	f.trimWindow(dir)
}

// pendingRule is a stream rule whose fast pattern ended at fpEnd.
type pendingRule struct {
	rule  int32
	fpEnd uint64
}

// maxPending bounds the pending rules per direction; the oldest go first.
const maxPending = 64

// appendWindow adds delivered bytes to the direction's window, not yet
// inspected.
func (f *flow) appendWindow(dir stream.Dir, data []byte) {
	if f.win[dir] == nil {
		f.win[dir] = make([]byte, 0, windowSize+holdMax)
	}
	f.win[dir] = append(f.win[dir], data...)
	f.winEnd[dir] += uint64(len(data))
	f.held[dir] += len(data)
}

// trimWindow keeps the inspected window's last windowSize bytes.
func (f *flow) trimWindow(dir stream.Dir) {
	w := f.win[dir]
	keep := max(windowSize, f.held[dir])
	if len(w) > keep {
		n := copy(w, w[len(w)-keep:])
		w = w[:n]
	}
	if cap(w) > 4*(windowSize+holdMax) {
		w = append(make([]byte, 0, windowSize+holdMax), w...)
	}
	f.win[dir] = w
}

// emit receives an application-layer transaction.
func (i *Inspector) emit(tx *applayer.Tx) {
	e, f := i.cur.e, i.cur.f
	if e == nil || f == nil || f.passed {
		return
	}
	cr := &e.tx
	i.cands.reset(len(e.rules))
	for b := range tx.Buf {
		if tx.Buf[b] != nil {
			cr.pf[b].scan(tx.Buf[b], &i.cands)
		}
	}
	payload := f.win[tx.Dir&1]
	if f.proto == protoUDP && i.cur.p != nil {
		payload = i.cur.p.payload
	}
	cr.pf[rules.BufPayload].scan(payload, &i.cands)
	if !tx.Continues || i.txFlow != f || i.txID != tx.ID {
		i.txFired, i.txFlow, i.txID = i.txFired[:0], f, tx.ID
	}
	i.fired = i.fired[:0]
	i.evaluate(cr.always, i.cands.list, ctxTx, tx.Dir, payload, 0, -1, tx)
	i.txFired = append(i.txFired, i.fired...)
}

// evaluate runs the candidates (and the always-candidates) in engine
// order. buf is the payload (packet or stream window, base its stream
// offset, minEnd as in mstate); tx the transaction for ctxTx.
func (i *Inspector) evaluate(always, cands []int32, ctx ruleCtx, dir stream.Dir, buf []byte, base, minEnd int, tx *applayer.Tx) {
	e, f := i.cur.e, i.cur.f
	i.msc.payASCII = 0 // a new payload buffer
	// Merge the two ascending-by-index lists so rules run in engine order.
	sortInt32(cands)
	a, c := 0, 0
	for a < len(always) || c < len(cands) {
		var r int32
		if c >= len(cands) || (a < len(always) && always[a] < cands[c]) {
			r = always[a]
			a++
		} else {
			r = cands[c]
			c++
		}
		if f.passed {
			return
		}
		if ctx == ctxTx && tx.Continues && slices.Contains(i.txFired, r) {
			continue
		}
		cr := e.rules[r]
		if !i.headerOK(cr, f, dir, ctx, tx) {
			continue
		}
		first, end, ok := matchAll(cr, buf, base, minEnd, tx, &i.msc)
		if !ok {
			continue
		}
		if ctx == ctxStream && end >= 0 && f.sameEvent(cr.idx, dir, uint64(base+first), uint64(base+end)) {
			continue
		}
		i.fired = append(i.fired, r)
		i.fire(cr, f, dir, buf, tx)
	}
}

// sortInt32 is an insertion sort: candidate lists are short and this
// allocates nothing.
func sortInt32(s []int32) {
	for j := 1; j < len(s); j++ {
		v := s[j]
		k := j
		for k > 0 && s[k-1] > v {
			s[k] = s[k-1]
			k--
		}
		s[k] = v
	}
}

// headerOK checks everything but the buffers: protocol, addresses and
// ports in the rule's direction, flow, flowbits, dsize.
func (i *Inspector) headerOK(c *crule, f *flow, dir stream.Dir, ctx ruleCtx, tx *applayer.Tx) bool {
	r := c.r
	if c.transport != 0 && c.transport != f.proto && !(c.transport == protoICMP && f.proto == protoICMPv6) {
		return false
	}
	if c.app != 0 {
		if tx != nil {
			if tx.Proto != c.app {
				return false
			}
		} else if f.app.Proto() != c.app {
			return false
		}
	}
	fl := &r.Flow
	if fl.ToServer && dir != stream.ToServer || fl.ToClient && dir != stream.ToClient {
		return false
	}
	if fl.Established && !f.established || fl.NotEstablished && f.established {
		return false
	}
	if r.Dsize != nil {
		if ctx != ctxPacket || !cmpInt(r.Dsize, uint64(len(i.cur.p.payload))) {
			return false
		}
	}
	if tx != nil && r.TLSVersion != 0 && tx.TLSVersion != r.TLSVersion {
		return false
	}
	if ctx == ctxPacket {
		p := i.cur.p
		if r.TCPFlags != nil && (p.proto != protoTCP || !flagsOK(r.TCPFlags, p.tcpFlags)) {
			return false
		}
		if r.IType != nil || r.ICode != nil {
			if p.proto != protoICMP && p.proto != protoICMPv6 || !p.transportK {
				return false
			}
			if r.IType != nil && !cmpInt(r.IType, uint64(p.icmpType)) || r.ICode != nil && !cmpInt(r.ICode, uint64(p.icmpCode)) {
				return false
			}
		}
	}
	// Addresses last: the cheap tests above reject most rules first.
	src, dst := f.client, f.server
	if dir == stream.ToClient {
		src, dst = dst, src
	}
	if ctx == ctxPacket {
		p := i.cur.p
		src, dst = netip.AddrPortFrom(p.src, p.sport), netip.AddrPortFrom(p.dst, p.dport)
	}
	if !endpointsOK(r, src, dst, f.proto) && !(r.Bidirectional && endpointsOK(r, dst, src, f.proto)) {
		return false
	}
	for _, fb := range r.Flowbits {
		switch fb.Cmd {
		case rules.FlowbitIsSet:
			if !f.anyBit(fb.Names) {
				return false
			}
		case rules.FlowbitIsNotSet:
			if f.anyBit(fb.Names) {
				return false
			}
		}
	}
	return true
}

func endpointsOK(r *rules.Rule, src, dst netip.AddrPort, proto uint8) bool {
	if proto == protoTCP || proto == protoUDP {
		if r.SrcPorts != nil && !r.SrcPorts.Contains(src.Port()) || r.DstPorts != nil && !r.DstPorts.Contains(dst.Port()) {
			return false
		}
	}
	return (r.Src == nil || r.Src.Contains(src.Addr())) && (r.Dst == nil || r.Dst.Contains(dst.Addr()))
}

// matchAll checks each buffer group; first and end are the payload
// match's extent in buf (-1 when none).
func matchAll(c *crule, buf []byte, base, minEnd int, tx *applayer.Tx, sc *matchScratch) (first, end int, ok bool) {
	if sc == nil {
		sc = new(matchScratch)
	}
	var st mstate
	first, end = -1, -1
	for g := range c.groups {
		grp := &c.groups[g]
		if tx != nil && grp.buf != rules.BufPayload {
			b := tx.Buf[grp.buf]
			if b == nil || bufDirs[grp.buf]&(1<<tx.Dir) == 0 {
				return -1, -1, false
			}
			st = mstate{buf: b, minEnd: -1, sc: sc}
		} else if tx != nil {
			st = mstate{buf: buf, minEnd: -1, sc: sc, ascii: sc.payASCII}
		} else {
			st = mstate{buf: buf, base: base, minEnd: minEnd, sc: sc, ascii: sc.payASCII}
		}
		ok := matchGroup(grp, &st)
		if grp.buf == rules.BufPayload {
			sc.payASCII = st.ascii
		}
		if !ok {
			return -1, -1, false
		}
		if grp.buf == rules.BufPayload {
			first, end = st.first, st.end
		}
	}
	return first, end, true
}

// useEngine resets what is indexed by the engine's rules (flowbits, by
// name, stay).
func (f *flow) useEngine(e *Engine) {
	f.eng, f.marks = e, f.marks[:0]
	f.acState = [2]int32{}
	f.pending[0], f.pending[1] = f.pending[0][:0], f.pending[1][:0]
}

// streamMark is the extent of a stream rule's last alert in a direction.
type streamMark struct {
	rule       int32
	dir        stream.Dir
	start, end uint64
}

// maxMarks bounds the marks per flow; the oldest goes first.
const maxMarks = 32

// sameEvent says whether a stream match [start, end) overlaps or touches
// the rule's previous one in the direction (then it extends it), else
// records it.
func (f *flow) sameEvent(rule int32, dir stream.Dir, start, end uint64) bool {
	for j := range f.marks {
		mk := &f.marks[j]
		if mk.rule == rule && mk.dir == dir {
			if start <= mk.end && end >= mk.start {
				mk.end = max(mk.end, end)
				return true
			}
			mk.start, mk.end = start, end
			return false
		}
	}
	if len(f.marks) == maxMarks {
		f.marks = append(f.marks[:0], f.marks[1:]...)
	}
	f.marks = append(f.marks, streamMark{rule: rule, dir: dir, start: start, end: end})
	return false
}

func (f *flow) anyBit(names []string) bool {
	for _, n := range names {
		for _, b := range f.bits {
			if b == n {
				return true
			}
		}
	}
	return false
}

func (f *flow) setBit(n string) {
	for _, b := range f.bits {
		if b == n {
			return
		}
	}
	f.bits = append(f.bits, n)
}

func (f *flow) unsetBit(n string) {
	for j, b := range f.bits {
		if b == n {
			f.bits = append(f.bits[:j], f.bits[j+1:]...)
			return
		}
	}
}

// fire applies a matching rule: detection_filter, flowbits, pass,
// threshold, the action and the alert.
func (i *Inspector) fire(c *crule, f *flow, dir stream.Dir, buf []byte, tx *applayer.Tx) {
	r := c.r
	ts := i.cur.ts
	src, dst := f.client, f.server
	if dir == stream.ToClient {
		src, dst = dst, src
	}
	if t := r.Threshold; t != nil && t.DetectionFilter {
		if !i.thresh.check(r, t, src.Addr(), dst.Addr(), ts, &i.stats) {
			return
		}
	}
	for _, fb := range r.Flowbits {
		for _, n := range fb.Names {
			switch fb.Cmd {
			case rules.FlowbitSet:
				f.setBit(n)
			case rules.FlowbitUnset:
				f.unsetBit(n)
			case rules.FlowbitToggle:
				if f.anyBit([]string{n}) {
					f.unsetBit(n)
				} else {
					f.setBit(n)
				}
			}
		}
	}
	if r.Action == rules.ActionPass {
		f.passed = true
		return
	}
	blocked := false
	if i.cur.inline && (r.Action == rules.ActionDrop || r.Action == rules.ActionReject) {
		blocked = true
		v := VerdictDrop
		if r.Action == rules.ActionReject {
			v = VerdictReject
		}
		if i.cur.verdict == VerdictPass {
			i.cur.verdict = v
		}
		f.blocked = true // later packets are dropped (a reject answered once)
	}
	if r.Noalert {
		return
	}
	if t := r.Threshold; t != nil && !t.DetectionFilter {
		if !i.thresh.check(r, t, src.Addr(), dst.Addr(), ts, &i.stats) {
			return
		}
	}
	if tx == nil {
		// One alert per rule per packet; a transaction is inspected
		// once, so per transaction it is one anyway.
		if i.alerted.stamp[c.idx] == i.alerted.gen {
			return
		}
		i.alerted.add(c.idx)
	}
	i.stats.Alerts++
	if i.cfg.OnAlert == nil {
		return
	}
	a := &Alert{
		Time: ts, FlowID: f.id, Interface: i.cfg.Interface,
		Src: src, Dst: dst, Proto: f.proto, Dir: dir,
		Blocked: blocked, Verdict: i.cur.verdict, Rule: r,
		AppProto: f.app.Proto(),
		Flow: FlowCounters{
			PktsToServer: f.pkts[0], PktsToClient: f.pkts[1],
			BytesToServer: f.bytes[0], BytesToClient: f.bytes[1],
			Start: f.start,
		},
	}
	if p := i.cur.p; p != nil && (p.proto == protoICMP || p.proto == protoICMPv6) {
		a.Src, a.Dst = netip.AddrPortFrom(p.src, 0), netip.AddrPortFrom(p.dst, 0)
		a.ICMPType, a.ICMPCode = p.icmpType, p.icmpCode
	}
	if tx != nil {
		a.AppProto = tx.Proto
		a.HTTP, a.TLS, a.DNS, a.SSH = copyInfo(tx)
		for _, g := range c.groups {
			if g.buf != rules.BufPayload {
				buf = tx.Buf[g.buf]
				break
			}
		}
	}
	if len(buf) > MaxAlertPayload {
		buf = buf[len(buf)-MaxAlertPayload:]
	}
	a.Payload = append([]byte(nil), buf...)
	i.cfg.OnAlert(a)
}

func flagsOK(t *rules.TCPFlags, fl uint8) bool {
	fl &^= t.Ignore
	switch t.Mode {
	case rules.FlagsAll:
		return fl&t.Flags == t.Flags
	case rules.FlagsAny:
		return fl&t.Flags != 0
	case rules.FlagsNot:
		return fl&t.Flags == 0
	}
	return fl == t.Flags
}

// copyInfo copies a transaction's EVE objects: the Tx's are reused.
func copyInfo(tx *applayer.Tx) (*applayer.HTTPInfo, *applayer.TLSInfo, *applayer.DNSInfo, *applayer.SSHInfo) {
	var h *applayer.HTTPInfo
	var t *applayer.TLSInfo
	var d *applayer.DNSInfo
	var s *applayer.SSHInfo
	if tx.HTTP != nil {
		c := *tx.HTTP
		h = &c
	}
	if tx.TLS != nil {
		c := *tx.TLS
		if c.JA3 != nil {
			j := *c.JA3
			c.JA3 = &j
		}
		if c.JA3S != nil {
			j := *c.JA3S
			c.JA3S = &j
		}
		t = &c
	}
	if tx.DNS != nil {
		c := *tx.DNS
		d = &c
	}
	if tx.SSH != nil {
		c := *tx.SSH
		if c.Client != nil {
			p := *c.Client
			c.Client = &p
		}
		if c.Server != nil {
			p := *c.Server
			c.Server = &p
		}
		s = &c
	}
	return h, t, d, s
}
