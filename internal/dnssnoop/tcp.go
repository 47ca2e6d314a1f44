package dnssnoop

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// flowKey names one direction of a TCP connection: server to client.
type flowKey struct {
	src, dst     netip.Addr
	sport, dport uint16
}

// tcpStream reassembles the server-to-client half of one DNS-over-TCP
// connection: messages, each after a 2-byte length, possibly split across
// segments or several in one.
type tcpStream struct {
	next   uint32 // sequence number of the next byte expected
	synced bool   // next is known
	broken bool   // a byte was missed: no message boundary can be trusted
	buf    []byte
	seen   int64
}

// Reassembler holds a bounded number of TCP streams. Not safe for
// concurrent use: one reader owns it.
type Reassembler struct {
	maxFlows int
	maxBytes int // per stream: one whole message and its length
	idle     time.Duration
	flows    map[flowKey]*tcpStream
	free     []*tcpStream

	// counters
	Messages, Gaps, Overflows, Refused uint64
}

// NewReassembler bounds the streams followed at once (beyond it, new
// streams are refused until one ends or idles out) and the bytes buffered
// per stream.
func NewReassembler(maxFlows int, idle time.Duration) *Reassembler {
	return &Reassembler{maxFlows: maxFlows, maxBytes: 2 + 65535, idle: idle, flows: map[flowKey]*tcpStream{}}
}

// Flows is how many streams are followed.
func (r *Reassembler) Flows() int { return len(r.flows) }

// add feeds one segment and calls msg for each complete DNS message.
func (r *Reassembler) add(s *segment, now time.Time, msg func([]byte)) {
	k := flowKey{s.src, s.dst, s.sport, s.dport}
	st := r.flows[k]
	if s.rst || (s.fin && len(s.payload) == 0) {
		if st != nil {
			r.release(k, st)
		}
		return
	}
	if st == nil {
		if len(s.payload) == 0 && !s.syn {
			return // a bare ACK of a stream we never saw start
		}
		if len(r.flows) >= r.maxFlows {
			r.expire(now)
			if len(r.flows) >= r.maxFlows {
				r.Refused++
				return
			}
		}
		if n := len(r.free); n > 0 {
			st, r.free = r.free[n-1], r.free[:n-1]
		} else {
			st = &tcpStream{}
		}
		r.flows[k] = st
	}
	st.seen = now.UnixNano()
	seq := s.seq
	if s.syn {
		st.next, st.synced, st.broken, st.buf = seq+1, true, false, st.buf[:0]
		seq++
	}
	data := s.payload
	if len(data) > 0 && !st.broken {
		if !st.synced {
			// Joined mid-stream: assume a message starts here, as DNS
			// servers only write whole answers after a query.
			st.next, st.synced = seq, true
		}
		switch d := int32(seq - st.next); {
		case d > 0:
			st.broken = true
			st.buf = st.buf[:0]
			r.Gaps++
		case -d >= int32(len(data)):
			data = nil // a retransmission of what we have
		default:
			data = data[-d:]
		}
		if !st.broken && len(data) > 0 {
			st.next += uint32(len(data))
			if len(st.buf)+len(data) > r.maxBytes {
				st.broken = true
				st.buf = st.buf[:0]
				r.Overflows++
			} else {
				st.buf = append(st.buf, data...)
				r.drain(st, msg)
			}
		}
	}
	if s.fin {
		r.release(k, st)
	}
}

// drain hands over every complete message and keeps the rest.
func (r *Reassembler) drain(st *tcpStream, msg func([]byte)) {
	off := 0
	for len(st.buf)-off >= 2 {
		n := int(binary.BigEndian.Uint16(st.buf[off:]))
		if len(st.buf)-off-2 < n {
			break
		}
		r.Messages++
		msg(st.buf[off+2 : off+2+n])
		off += 2 + n
	}
	if off > 0 {
		st.buf = st.buf[:copy(st.buf, st.buf[off:])]
	}
}

func (r *Reassembler) release(k flowKey, st *tcpStream) {
	delete(r.flows, k)
	*st = tcpStream{buf: st.buf[:0]}
	if cap(st.buf) > 4096 {
		st.buf = nil // do not keep a large buffer for the next stream
	}
	if len(r.free) < r.maxFlows {
		r.free = append(r.free, st)
	}
}

// expire drops streams idle longer than the idle timeout.
func (r *Reassembler) expire(now time.Time) {
	limit := now.Add(-r.idle).UnixNano()
	for k, st := range r.flows {
		if st.seen < limit {
			r.release(k, st)
		}
	}
}
