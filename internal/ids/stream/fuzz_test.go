package stream

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzSegment drives a Conn with arbitrary segment sequences. Input: 4
// bytes of initial sequence number, a stream of truth (the first 512 bytes
// after that, per direction the same), then records of 5 bytes (flags with
// the direction in bit 7, a 16-bit offset into the truth, a length, a
// "lie" byte). A segment is cut from the truth at its offset; a non-zero lie
// flips one of its bytes. Properties: no panic; offsets delivered are
// contiguous (the sink checks); a direction that never saw a lie delivers
// a prefix of the truth; the held data stays within the window.
func FuzzSegment(f *testing.F) {
	truth := bytes.Repeat([]byte("GET /x HTTP/1.1\r\nHost: a\r\n\r\n"), 20)
	enc := func(isn uint32, recs ...[5]byte) []byte {
		out := binary.BigEndian.AppendUint32(nil, isn)
		out = append(out, truth...)
		for _, r := range recs {
			out = append(out, r[:]...)
		}
		return out
	}
	f.Add(enc(1000, [5]byte{FlagSYN, 0, 0, 0, 0}, [5]byte{FlagACK, 0, 10, 20, 0}, [5]byte{FlagACK, 0, 0, 10, 0}))
	f.Add(enc(0xfffffff0, [5]byte{FlagSYN, 0, 0, 0, 0}, [5]byte{FlagACK, 0, 5, 30, 0}, [5]byte{FlagACK, 0, 0, 9, 3}, [5]byte{FlagACK | FlagFIN, 0, 0, 60, 0}))
	f.Add(enc(7, [5]byte{0x80 | FlagSYN | FlagACK, 0, 0, 0, 0}, [5]byte{0x80 | FlagACK, 1, 0, 200, 0}, [5]byte{0x80 | FlagRST, 0, 0, 0, 0}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 4+len(truth) {
			return
		}
		isn := binary.BigEndian.Uint32(data)
		data = data[4:]
		tr := data[:len(truth)]
		data = data[len(truth):]
		var c Conn
		c.Reset(Config{Depth: 400, MaxPending: 128, History: 64})
		s := &sink{t: t}
		var lied [2]bool
		var synced [2]bool // the direction started from a SYN at isn
		first := [2]bool{true, true}
		for ; len(data) >= 5; data = data[5:] {
			flags, dir := data[0]&0x7f, Dir(data[0]>>7)
			off := int(binary.BigEndian.Uint16(data[1:])) % len(tr)
			if flags&FlagSYN != 0 {
				off = 0 // a SYN's data starts the stream
			}
			n := min(int(data[3]), len(tr)-off)
			p := tr[off : off+n]
			if data[4] != 0 && n > 0 {
				p = bytes.Clone(p)
				p[int(data[4])%n] ^= 0xff
				lied[dir] = true
			}
			seq := isn + 1 + uint32(off)
			if flags&FlagSYN != 0 {
				seq = isn
			}
			if first[dir] {
				synced[dir] = flags&FlagSYN != 0
				first[dir] = false
			}
			c.Segment(dir, seq, flags, p, s.deliver)
			st := c.Stats()[dir]
			if st.Pending > 128 {
				t.Fatalf("%d bytes pending beyond the window", st.Pending)
			}
			if st.Delivered > 400 {
				t.Fatalf("%d bytes delivered beyond the depth", st.Delivered)
			}
		}
		for d := range 2 {
			if synced[d] && !lied[d] && !bytes.HasPrefix(tr, s.data[d]) {
				t.Fatalf("%v: delivered %q is no prefix of the truth", Dir(d), s.data[d])
			}
		}
	})
}
