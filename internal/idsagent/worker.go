package idsagent

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/bulkhead/bulkhead/internal/ids"
)

// worker is one reader goroutine's inspection state: its own flow table
// (every packet of a flow reaches the same worker: one NFLOG reader, and
// the queue rule balances by a symmetric flow hash) and the packet being
// inspected, for the alert callback.
type worker struct {
	r      *Reader
	inline bool
	insp   *ids.Inspector
	resp   responders

	// The packet being inspected.
	cur struct {
		slot    *slot
		in, out *slot // the inspected workloads behind the packet's interfaces
		src     netip.Addr
	}
}

func (r *Reader) newWorker(inline bool) *worker {
	w := &worker{r: r, inline: inline}
	cfg := r.cfg.Inspector
	cfg.OnAlert = w.onAlert
	w.insp = ids.NewInspector(cfg)
	w.resp.init(maxResponders)
	return w
}

// handle inspects one packet that came in through interface index in and
// leaves through out.
func (w *worker) handle(ts time.Time, pkt []byte, in, out uint32) ids.Verdict {
	r := w.r
	r.packets.Add(1)
	r.bytes.Add(uint64(len(pkt)))
	set := r.set.Load()
	si, so := set.byIface[r.ifName(in)], set.byIface[r.ifName(out)]
	s := w.pick(pkt, si, so)
	if s == nil {
		r.noEngine.Add(1)
		// Keep the flow state (reassembly) going, so that an engine
		// arriving later sees a consistent stream.
		w.insp.Packet(ts, pkt, nil, w.inline)
		return ids.VerdictPass
	}
	w.cur.slot, w.cur.in, w.cur.out = s, si, so
	w.cur.src = srcAddr(pkt)
	v := w.insp.Packet(ts, pkt, s.engine, w.inline)
	w.cur.slot, w.cur.in, w.cur.out = nil, nil, nil
	return v
}

// pick chooses the engine for a packet: the inspected workload's if only
// one end is; when both ends are inspected workloads of this host with
// different engines, the connection's responder's (the server is the
// one the signatures of its profile protect), else the initiator's. The
// responder is the destination of the first packet of the flow this
// worker saw (the source of a SYN-ACK).
func (w *worker) pick(pkt []byte, si, so *slot) *slot {
	switch {
	case si == nil:
		return so
	case so == nil || si.engine == so.engine && si.w.Mode == so.w.Mode:
		return si
	}
	k, srcIsA, synack, ok := tupleOf(pkt)
	if !ok {
		return so
	}
	respA, known := w.resp.get(k)
	if !known {
		// The first packet seen: a SYN-ACK comes from the responder,
		// anything else goes to it.
		respA = srcIsA == synack
		w.resp.put(k, respA)
	}
	if respA == srcIsA { // the responder sent this packet
		return si
	}
	return so
}

// onAlert fills the EVE "bulkhead" object and sends the alert.
func (w *worker) onAlert(a *ids.Alert) {
	s := w.cur.slot
	if s == nil { // an alert from flow upkeep without an engine: impossible, but never crash
		return
	}
	a.Interface = s.w.Interface
	src, dst := name(w.cur.in), name(w.cur.out)
	if a.Src.Addr() != w.cur.src {
		src, dst = dst, src
	}
	a.Bulkhead = ids.BulkheadInfo{
		Host: w.r.cfg.Host, SrcWorkload: src, DestWorkload: dst,
		Interface: s.w.Interface, Profile: s.profile, Mode: s.w.Mode,
	}
	w.r.emit(a)
}

func name(s *slot) string {
	if s == nil {
		return ""
	}
	return s.w.Name
}

// srcAddr is the packet's source address (the zero Addr if unreadable).
func srcAddr(pkt []byte) netip.Addr {
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		return netip.AddrFrom4([4]byte(pkt[12:16]))
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		return netip.AddrFrom16([16]byte(pkt[8:24])).Unmap()
	}
	return netip.Addr{}
}

// tuple is a connection's addresses, protocol and ports, the same for
// both directions (the smaller endpoint first).
type tuple struct {
	a, b   [16]byte
	pa, pb uint16
	proto  uint8
}

// tupleOf reads a TCP or UDP packet's tuple; srcIsA says the packet's
// source is the tuple's first endpoint, synack that it is a TCP SYN-ACK.
// IPv6 extension headers are not walked (ok false).
func tupleOf(pkt []byte) (k tuple, srcIsA, synack, ok bool) {
	var l4 []byte
	var src, dst [16]byte
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		ihl := int(pkt[0]&0xf) * 4
		if ihl < 20 || len(pkt) < ihl+4 || binary.BigEndian.Uint16(pkt[6:])&0x1fff != 0 {
			return k, false, false, false
		}
		k.proto = pkt[9]
		copy(src[12:], pkt[12:16])
		copy(dst[12:], pkt[16:20])
		l4 = pkt[ihl:]
	case len(pkt) >= 44 && pkt[0]>>4 == 6:
		k.proto = pkt[6]
		copy(src[:], pkt[8:24])
		copy(dst[:], pkt[24:40])
		l4 = pkt[40:]
	default:
		return k, false, false, false
	}
	if k.proto != 6 && k.proto != 17 {
		return k, false, false, false
	}
	sp, dp := binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	if k.proto == 6 && len(l4) >= 14 {
		synack = l4[13]&0x12 == 0x12
	}
	srcIsA = string(src[:]) < string(dst[:]) || src == dst && sp <= dp
	if srcIsA {
		k.a, k.b, k.pa, k.pb = src, dst, sp, dp
	} else {
		k.a, k.b, k.pa, k.pb = dst, src, dp, sp
	}
	return k, srcIsA, synack, true
}

// maxResponders bounds the responder memory of a worker (per generation).
const maxResponders = 1 << 16

// responders remembers, per connection between two inspected workloads,
// which side responds: two generations of maps, the older dropped when
// the newer fills, so memory stays bounded and active connections stay.
type responders struct {
	max       int
	cur, prev map[tuple]bool
}

func (r *responders) init(max int) {
	r.max, r.cur, r.prev = max, make(map[tuple]bool), make(map[tuple]bool)
}

func (r *responders) get(k tuple) (respA, ok bool) {
	if v, ok := r.cur[k]; ok {
		return v, true
	}
	if v, ok := r.prev[k]; ok {
		r.put(k, v)
		return v, true
	}
	return false, false
}

func (r *responders) put(k tuple, respA bool) {
	if len(r.cur) >= r.max {
		r.prev, r.cur = r.cur, make(map[tuple]bool, r.max/4)
	}
	r.cur[k] = respA
}

// ifName resolves an interface index (0: none), cached until the state
// changes.
func (r *Reader) ifName(index uint32) string {
	if index == 0 {
		return ""
	}
	r.ifMu.RLock()
	n, ok := r.ifNames[index]
	r.ifMu.RUnlock()
	if ok {
		return n
	}
	n, err := r.cfg.IfName(index)
	if err != nil {
		r.log.Debug("idsagent: interface name", "index", index, "err", err)
		n = "" // cached too: an unknown index is not asked about per packet
	}
	r.ifMu.Lock()
	r.ifNames[index] = n
	r.ifMu.Unlock()
	return n
}

func (r *Reader) forgetIfNames() {
	r.ifMu.Lock()
	clear(r.ifNames)
	r.ifMu.Unlock()
}
