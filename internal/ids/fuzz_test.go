package ids

import (
	"encoding/binary"
	"testing"
	"time"
)

// FuzzInspect feeds the inspector (decoding, flow table, reassembly, app
// layer, rules) arbitrary input, two ways by the first argument's low
// bit:
//   - 0: data is a sequence of packets, each a 2-byte length and its
//     bytes: nothing may panic;
//   - 1: data chooses how a real exploit request is cut into segments
//     and in which order they are sent, with duplicates: the HTTP rule
//     must then fire exactly once, whatever the order.
func FuzzInspect(f *testing.F) {
	e := compileOne(f, parse(f, httpRules...)...)
	k := newConn(f, 44000, 80)
	var seed []byte
	for _, p := range append(k.handshake(), k.toServer(0, []byte(exploitRequest)), k.toClient(0, []byte("HTTP/1.1 500 X\r\n\r\n")), udpPacket(f, k.c, k.s, []byte("x"))) {
		seed = binary.BigEndian.AppendUint16(seed, uint16(len(p)))
		seed = append(seed, p...)
	}
	f.Add(byte(0), seed)
	f.Add(byte(2), seed)
	f.Add(byte(0), seed[:len(seed)/2])
	f.Add(byte(1), []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Add(byte(1), []byte{7, 200, 3, 99, 1, 255, 0, 17, 42})
	f.Add(byte(3), []byte{})

	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		var alerts []uint32
		insp := NewInspector(InspectorConfig{MaxFlows: 8, OnAlert: func(a *Alert) {
			alerts = append(alerts, a.Rule.SID)
			a.EVE()
		}})
		inline := mode&2 != 0
		ts := t0
		if mode&1 == 0 {
			for len(data) >= 2 {
				n := int(binary.BigEndian.Uint16(data))
				data = data[2:]
				n = min(n, len(data))
				insp.Packet(ts, data[:n], e, inline)
				data = data[n:]
				ts = ts.Add(time.Millisecond)
			}
			insp.CloseAll(ts, e)
			return
		}

		// Cut the request into segments sized by the data, then send
		// them in an order the data picks, some twice.
		k := newConn(t, 44001, 80)
		var segs []segment
		for off, j := 0, 0; off < len(exploitRequest); j++ {
			size := 1
			if len(data) > 0 {
				size = 1 + int(data[j%len(data)]%16)
			}
			size = min(size, len(exploitRequest)-off)
			segs = append(segs, segment{off, []byte(exploitRequest[off : off+size])})
			off += size
		}
		for j, b := range data {
			a, c := j%len(segs), int(b)%len(segs)
			segs[a], segs[c] = segs[c], segs[a]
			if b&0x80 != 0 {
				segs = append(segs, segs[c])
			}
		}
		for _, p := range k.handshake() {
			insp.Packet(ts, p, e, inline)
		}
		for _, s := range segs {
			insp.Packet(ts, k.toServer(s.off, s.data), e, inline)
		}
		insp.CloseAll(ts, e)
		n := 0
		for _, sid := range alerts {
			if sid == 3000001 {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("segments %v: sid 3000001 alerted %d times, want 1 (alerts %v)", segs, n, alerts)
		}
	})
}
