package dpi

import (
	"encoding/binary"
	"testing"
)

// encodeFlow packs a flow for FuzzFeed: a transport byte (odd: UDP), then
// per payload a 2-byte header (direction in the top bit, length below) and
// the payload.
func encodeFlow(proto uint8, samples []sample) []byte {
	out := []byte{0}
	if proto == UDP {
		out[0] = 1
	}
	for _, s := range samples {
		n := min(len(s.payload), 0x7fff)
		h := uint16(n) | uint16(s.dir)<<15
		out = binary.BigEndian.AppendUint16(out, h)
		out = append(out, s.payload[:n]...)
	}
	return out
}

// FuzzFeed feeds arbitrary payload sequences: the engine must not panic,
// must keep its attributes within bounds, and must not change a result it
// called done.
func FuzzFeed(f *testing.F) {
	for _, lf := range loadCaptures(f) {
		f.Add(encodeFlow(lf.flow.Proto, lf.samples))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		var fl Flow
		proto := TCP
		if data[0]&1 == 1 {
			proto = UDP
		}
		fl.Reset(proto)
		data = data[1:]
		var final *Result
		var frozen Result
		for len(data) >= 2 {
			h := binary.BigEndian.Uint16(data)
			n := min(int(h&0x7fff), len(data)-2)
			r, done := fl.Feed(Dir(h>>15), data[2:2+n])
			data = data[2+n:]
			if final != nil && *r != frozen {
				t.Fatalf("result changed after done")
			}
			if done && final == nil {
				final, frozen = r, *r
			}
		}
		r := fl.Finish()
		if r.App >= numApps || len(r.Host()) > 253 || len(r.Path()) > 128 || len(r.Detail()) > 64 {
			t.Fatalf("result out of bounds: %+v", r)
		}
		_ = r.App.String()
		_ = r.TLSVersionName()
	})
}
