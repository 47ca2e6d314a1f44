// Package stream reassembles the two byte streams of a TCP connection for
// the intrusion detection engine: segments in any order, duplicated or
// overlapping, become each direction's bytes delivered exactly once, in
// order, with their offset, so that splitting a payload into tiny,
// shuffled or overlapping segments does not hide it from the signatures.
//
// Policies, chosen so that the engine and the receiver cannot be made to
// see different bytes:
//
//   - Data already delivered stays delivered. A retransmission carrying
//     the same bytes is ignored; one carrying different bytes (compared
//     against the recent history kept per direction) is reported as
//     AnomalyOverlap. The inline IPS drops such segments, so the receiver
//     only ever gets the bytes the engine inspected.
//   - Overlapping out-of-order segments: the first bytes received for an
//     offset win; a later segment with different bytes there is reported
//     as AnomalyOverlap (and, inline, dropped).
//   - Out-of-order data is held within a window of MaxPending bytes after
//     the next expected byte; data beyond the window is dropped (it is the
//     data furthest ahead) and reported as AnomalyPending.
//   - After Depth bytes of a direction nothing more is delivered; Stats
//     counts what was skipped.
//   - A FIN ends the direction at its sequence number (later data is
//     AnomalyAfterClose); an RST ends the direction at once.
package stream

import "bytes"

// Dir is a direction within a connection.
type Dir uint8

const (
	// ToServer is from the connection's originator (the SYN's sender, or
	// the first packet's sender when the connection was picked up
	// mid-stream).
	ToServer Dir = 0
	// ToClient is the other direction.
	ToClient Dir = 1
)

func (d Dir) String() string {
	if d == ToServer {
		return "to_server"
	}
	return "to_client"
}

// TCP header flag bits Segment reads.
const (
	FlagFIN uint8 = 0x01
	FlagSYN uint8 = 0x02
	FlagRST uint8 = 0x04
	FlagACK uint8 = 0x10
)

// Anomaly is a set of things a segment did that a well-behaved sender does
// not do. The inline path drops a segment that reports AnomalyOverlap.
type Anomaly uint8

const (
	// AnomalyOverlap: the segment repeats bytes already received (delivered
	// or pending) with different content. The first bytes stay.
	AnomalyOverlap Anomaly = 1 << iota
	// AnomalyPending: out-of-order data reached beyond the pending window
	// and the part beyond was dropped.
	AnomalyPending
	// AnomalyAfterClose: data beyond the direction's FIN, or after its RST.
	AnomalyAfterClose
)

func (a Anomaly) String() string {
	if a == 0 {
		return "none"
	}
	var b []byte
	for _, n := range [...]struct {
		bit  Anomaly
		name string
	}{{AnomalyOverlap, "overlap"}, {AnomalyPending, "pending_limit"}, {AnomalyAfterClose, "after_close"}} {
		if a&n.bit != 0 {
			if len(b) > 0 {
				b = append(b, '|')
			}
			b = append(b, n.name...)
		}
	}
	return string(b)
}

// Defaults of Config.
const (
	DefaultDepth      = 1 << 20
	DefaultMaxPending = 256 << 10
	DefaultHistory    = 16 << 10
)

// Config bounds the memory a connection may use. Zero fields take the
// defaults.
type Config struct {
	// Depth is how many bytes per direction are delivered (1 MiB).
	Depth int
	// MaxPending bounds out-of-order data held per direction: the window
	// after the next expected byte (256 KiB).
	MaxPending int
	// History is how many delivered bytes per direction are kept to
	// compare retransmissions with (16 KiB); older retransmissions are
	// ignored unchecked (the receiver, too, keeps the first copy of bytes
	// it acknowledged). It grows with the delivered data, so short
	// connections keep little, and is freed when the direction ends or
	// reaches Depth.
	History int
}

func (c Config) withDefaults() Config {
	if c.Depth <= 0 {
		c.Depth = DefaultDepth
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.History <= 0 {
		c.History = DefaultHistory
	}
	return c
}

// DirStats counts one direction's bytes.
type DirStats struct {
	Delivered     uint64 // bytes delivered in order
	Retransmitted uint64 // bytes received again after delivery
	Overlaps      uint64 // segments whose repeated bytes differed
	Dropped       uint64 // out-of-order bytes dropped beyond the window
	BeyondDepth   uint64 // bytes not delivered because of Depth
	AfterClose    uint64 // bytes after FIN/RST
	Pending       int    // out-of-order bytes held now
	Closed        bool   // FIN reached or RST seen
}

// Stats is what a connection did, per direction (index by Dir).
type Stats [2]DirStats

// span is a half-open range of stream offsets.
type span struct{ lo, hi uint64 }

// half is one direction.
type half struct {
	started bool
	closed  bool
	hasFIN  bool
	base    uint32 // sequence number of stream offset 0
	next    uint64 // offset of the next byte to deliver
	fin     uint64 // offset the FIN ends the stream at
	// win holds pending bytes: win[i] is offset next+i; have lists the
	// offsets present, sorted, disjoint and not adjacent.
	win  []byte
	have []span
	// hist is a ring of the last delivered bytes: offset o at o%cap.
	hist  []byte
	stats DirStats
}

// Conn is one TCP connection's reassembly state. The zero value is ready
// with the default Config; Reset sets another or reuses a Conn.
type Conn struct {
	cfg  Config
	init bool
	h    [2]half
}

// Reset readies c for a new connection with cfg, keeping its buffers.
func (c *Conn) Reset(cfg Config) {
	for i := range c.h {
		h := &c.h[i]
		*h = half{win: h.win[:0], have: h.have[:0], hist: h.hist[:0]}
	}
	c.cfg = cfg.withDefaults()
	c.init = true
}

// Stats returns the counters so far.
func (c *Conn) Stats() Stats {
	var s Stats
	for i := range c.h {
		s[i] = c.h[i].stats
		s[i].Pending = c.h[i].pendingBytes()
		s[i].Closed = c.h[i].closed
	}
	return s
}

// Closed says whether direction d has ended (FIN reached or RST).
func (c *Conn) Closed(d Dir) bool { return c.h[d&1].closed }

// Segment takes one TCP segment of direction dir: its sequence number, its
// header flags and its payload. deliver is called with every run of bytes
// that became in order, with the offset of its first byte in the
// direction's stream; the data is valid only during the call. Segment
// keeps no reference to payload.
func (c *Conn) Segment(dir Dir, seq uint32, flags uint8, payload []byte, deliver func(dir Dir, off uint64, data []byte)) Anomaly {
	if !c.init {
		c.Reset(Config{})
	}
	dir &= 1
	h := &c.h[dir]
	if flags&FlagSYN != 0 {
		if !h.started {
			h.started, h.base = true, seq+1
		}
		// The SYN takes one sequence number; data on a SYN (rare) follows it.
		seq++
	}
	if !h.started {
		if len(payload) == 0 && flags&(FlagFIN|FlagRST) == 0 {
			// A pure ACK's sequence number is the sender's next byte.
			h.started, h.base = true, seq
			return 0
		}
		h.started, h.base = true, seq
	}
	if h.closed {
		if len(payload) > 0 && !h.retransmitBeforeClose(seq, payload) {
			h.stats.AfterClose += uint64(len(payload))
			return AnomalyAfterClose
		}
		return 0
	}
	off := h.offset(seq)
	if off < 0 {
		// Before the stream's start (a data-carrying retransmitted SYN, or
		// garbage): only the part from offset 0 counts.
		if int64(len(payload)) <= -off {
			payload = nil
		} else {
			payload = payload[-off:]
		}
		off = 0
	}
	var an Anomaly
	end := uint64(off) + uint64(len(payload))
	if flags&FlagFIN != 0 && !h.hasFIN {
		h.hasFIN, h.fin = true, end
	}
	if h.hasFIN && end > h.fin {
		cut := end - h.fin
		if cut > uint64(len(payload)) {
			cut = uint64(len(payload))
		}
		h.stats.AfterClose += cut
		payload = payload[:uint64(len(payload))-cut]
		end -= cut
		an |= AnomalyAfterClose
	}
	an |= c.data(dir, h, uint64(off), payload, deliver)
	if flags&FlagRST != 0 || (h.hasFIN && h.next >= min(h.fin, uint64(c.cfg.Depth))) {
		h.close()
	}
	return an
}

// offset converts a sequence number to a stream offset relative to the
// next expected byte, so that wraparound is harmless.
func (h *half) offset(seq uint32) int64 {
	expect := h.base + uint32(h.next)
	return int64(h.next) + int64(int32(seq-expect))
}

func (h *half) retransmitBeforeClose(seq uint32, payload []byte) bool {
	off := h.offset(seq)
	return off >= 0 && uint64(off)+uint64(len(payload)) <= h.next
}

func (h *half) close() {
	h.closed = true
	h.win, h.have, h.hist = nil, h.have[:0], nil
}

func (h *half) pendingBytes() int {
	n := 0
	for _, s := range h.have {
		n += int(s.hi - s.lo)
	}
	return n
}

// data places payload at stream offset off.
func (c *Conn) data(dir Dir, h *half, off uint64, payload []byte, deliver func(Dir, uint64, []byte)) Anomaly {
	if len(payload) == 0 {
		return 0
	}
	var an Anomaly
	// Bytes already delivered: compare with the history.
	if off < h.next {
		n := h.next - off
		if n > uint64(len(payload)) {
			n = uint64(len(payload))
		}
		h.stats.Retransmitted += n
		if !h.sameAsHistory(off, payload[:n]) {
			an |= AnomalyOverlap
			h.stats.Overlaps++
		}
		payload, off = payload[n:], off+n
		if len(payload) == 0 {
			return an
		}
	}
	depth := uint64(c.cfg.Depth)
	if off+uint64(len(payload)) > depth {
		keep := uint64(0)
		if off < depth {
			keep = depth - off
		}
		h.stats.BeyondDepth += uint64(len(payload)) - keep
		payload = payload[:keep]
		if len(payload) == 0 {
			return an
		}
	}
	if off == h.next && len(h.have) == 0 {
		// In order with nothing pending: no copy but the history's.
		h.deliver(dir, c.cfg.History, payload, deliver)
		h.atDepth(depth)
		return an
	}
	// Out of order, or filling a gap: through the window.
	limit := h.next + uint64(c.cfg.MaxPending)
	if off >= limit {
		h.stats.Dropped += uint64(len(payload))
		return an | AnomalyPending
	}
	if end := off + uint64(len(payload)); end > limit {
		h.stats.Dropped += end - limit
		payload = payload[:limit-off]
		an |= AnomalyPending
	}
	if h.insert(off, payload) {
		an |= AnomalyOverlap
		h.stats.Overlaps++
	}
	if len(h.have) > 0 && h.have[0].lo == h.next {
		run := h.have[0]
		n := int(run.hi - run.lo)
		used := int(h.have[len(h.have)-1].hi - h.next)
		h.have = append(h.have[:0], h.have[1:]...)
		h.deliver(dir, c.cfg.History, h.win[:n], deliver)
		copy(h.win, h.win[n:used])
		h.win = h.win[:used-n]
		h.atDepth(depth)
	}
	return an
}

// atDepth frees the buffers once nothing more will be delivered.
func (h *half) atDepth(depth uint64) {
	if h.next >= depth {
		h.win, h.have, h.hist = nil, nil, nil
	}
}

// deliver hands an in-order run to the caller and keeps its tail in the
// history.
func (h *half) deliver(dir Dir, history int, run []byte, deliver func(Dir, uint64, []byte)) {
	off := h.next
	h.remember(history, run)
	h.next += uint64(len(run))
	h.stats.Delivered += uint64(len(run))
	if deliver != nil {
		deliver(dir, off, run)
	}
}

// remember writes run, which starts at h.next, into the history ring.
func (h *half) remember(history int, run []byte) {
	if len(run) > history {
		start := h.next + uint64(len(run)-history)
		run = run[len(run)-history:]
		h.writeRing(history, start, run)
		return
	}
	h.writeRing(history, h.next, run)
}

func (h *half) writeRing(history int, off uint64, b []byte) {
	// The ring grows with the stream until it reaches history bytes; while
	// it grows, offset o sits at index o.
	if len(h.hist) < history {
		want := int(off) + len(b)
		if off+uint64(len(b)) <= uint64(history) {
			if want > len(h.hist) {
				if want > cap(h.hist) {
					grown := make([]byte, want, min(history, max(2*cap(h.hist), want, 512)))
					copy(grown, h.hist)
					h.hist = grown
				} else {
					h.hist = h.hist[:want]
				}
			}
			copy(h.hist[off:], b)
			return
		}
		// Crossing the full size: switch to the ring layout. Offsets below
		// len(hist) <= history already sit at o%history = o.
		if cap(h.hist) >= history {
			h.hist = h.hist[:history]
		} else {
			full := make([]byte, history)
			copy(full, h.hist)
			h.hist = full
		}
	}
	n := uint64(len(h.hist))
	for len(b) > 0 {
		i := off % n
		k := copy(h.hist[i:], b)
		b, off = b[k:], off+uint64(k)
	}
}

// sameAsHistory says whether b, starting at delivered offset off, equals
// what was delivered there, as far as the history still has it.
func (h *half) sameAsHistory(off uint64, b []byte) bool {
	n := uint64(len(h.hist))
	if n == 0 {
		return true
	}
	oldest := uint64(0)
	if h.next > n {
		oldest = h.next - n
	}
	if off < oldest {
		skip := oldest - off
		if skip >= uint64(len(b)) {
			return true
		}
		b, off = b[skip:], oldest
	}
	for len(b) > 0 {
		i := off % n
		k := min(uint64(len(b)), n-i)
		if !bytes.Equal(h.hist[i:i+k], b[:k]) {
			return false
		}
		b, off = b[k:], off+k
	}
	return true
}

// insert writes payload at off into the window where nothing is yet,
// and reports whether bytes already there differed.
func (h *half) insert(off uint64, payload []byte) (differ bool) {
	end := off + uint64(len(payload))
	if need := int(end - h.next); need > len(h.win) {
		if need > cap(h.win) {
			grown := make([]byte, need, max(2*cap(h.win), need, 1024))
			copy(grown, h.win)
			h.win = grown
		} else {
			h.win = h.win[:need]
		}
	}
	at := func(o uint64) []byte { return h.win[o-h.next:] }
	// Walk the present spans: compare where they overlap, fill the gaps.
	cur := off
	i := 0
	for i < len(h.have) && h.have[i].hi < off {
		i++
	}
	for j := i; j < len(h.have) && cur < end; j++ {
		s := h.have[j]
		if s.lo > cur {
			gapEnd := min(s.lo, end)
			copy(at(cur)[:gapEnd-cur], payload[cur-off:gapEnd-off])
			cur = gapEnd
		}
		if cur < end && s.hi > cur {
			ovEnd := min(s.hi, end)
			if !bytes.Equal(at(cur)[:ovEnd-cur], payload[cur-off:ovEnd-off]) {
				differ = true
			}
			cur = ovEnd
		}
	}
	if cur < end {
		copy(at(cur)[:end-cur], payload[cur-off:])
	}
	h.addSpan(span{off, end})
	return differ
}

// addSpan merges s into have.
func (h *half) addSpan(s span) {
	i := 0
	for i < len(h.have) && h.have[i].hi < s.lo {
		i++
	}
	j := i
	for j < len(h.have) && h.have[j].lo <= s.hi {
		s.lo = min(s.lo, h.have[j].lo)
		s.hi = max(s.hi, h.have[j].hi)
		j++
	}
	if i == j {
		h.have = append(h.have, span{})
		copy(h.have[i+1:], h.have[i:])
		h.have[i] = s
		return
	}
	h.have[i] = s
	h.have = append(h.have[:i+1], h.have[j:]...)
}
