package nfq

import (
	"encoding/binary"
	"testing"
)

// msg wraps attributes in a netlink header and the nfgenmsg of queue 7.
func msg(attrs []byte) []byte {
	b := binary.NativeEndian.AppendUint32(nil, uint32(20+len(attrs)))
	b = binary.NativeEndian.AppendUint16(b, 3<<8)
	b = append(b, make([]byte, 10)...)
	b = append(b, 2, 0, 0, 7)
	return append(b, attrs...)
}

func TestParseMessages(t *testing.T) {
	pkt := []byte{0x45, 0, 0, 21, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 'x'}
	attrs := AppendAttr(nil, AttrPacketHdr, []byte{0, 0, 0, 9, 8, 0, 2})
	attrs = AppendAttr(attrs, attrMark, binary.BigEndian.AppendUint32(nil, 0x80000001))
	attrs = AppendAttr(attrs, attrInDev, binary.BigEndian.AppendUint32(nil, 3))
	attrs = AppendAttr(attrs, attrOutDev, binary.BigEndian.AppendUint32(nil, 4))
	attrs = AppendAttr(attrs, AttrPayload, pkt)
	b := append(msg(attrs), msg(AppendAttr(nil, AttrPacketHdr, []byte{0, 0, 0, 10, 8, 0, 2}))...)
	var got []Packet
	if err := ParseMessages(b, func(p *Packet) {
		q := *p
		q.Payload = append([]byte(nil), p.Payload...)
		got = append(got, q)
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d packets, want 2", len(got))
	}
	p := got[0]
	if p.ID != 9 || p.Mark != 0x80000001 || p.InDev != 3 || p.OutDev != 4 || string(p.Payload) != string(pkt) {
		t.Errorf("first packet %+v", p)
	}
	if got[1].ID != 10 || got[1].Mark != 0 || got[1].Payload != nil {
		t.Errorf("second packet %+v: attributes leaked from the first", got[1])
	}
}

func FuzzParseMessages(f *testing.F) {
	hdr := AppendAttr(nil, AttrPacketHdr, []byte{0, 0, 0, 9, 8, 0, 2})
	f.Add(msg(append(hdr, AppendAttr(nil, AttrPayload, []byte("E\x00\x00\x15abcdefghijklmnopq"))[:4+11]...)))
	f.Add(msg(hdr))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseMessages(b, func(p *Packet) {
			if !p.hasID {
				t.Fatal("packet without id")
			}
		})
	})
}
