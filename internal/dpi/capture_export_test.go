package dpi

import (
	"bytes"
	"io"
	"os"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

func TestLinkPayload(t *testing.T) {
	ip4 := []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}
	ip6 := append([]byte{0x60}, make([]byte, 39)...)
	eth := func(et ...byte) []byte { return append(make([]byte, 12), et...) }
	tests := []struct {
		name string
		lt   layers.LinkType
		hdr  []byte
		ip   []byte
		want bool
	}{
		{"ethernet", layers.LinkTypeEthernet, eth(0x08, 0x00), ip4, true},
		{"ethernet ipv6", layers.LinkTypeEthernet, eth(0x86, 0xdd), ip6, true},
		{"802.1Q", layers.LinkTypeEthernet, eth(0x81, 0x00, 0, 5, 0x08, 0x00), ip4, true},
		{"QinQ", layers.LinkTypeEthernet, eth(0x88, 0xa8, 0, 5, 0x81, 0x00, 0, 6, 0x08, 0x00), ip4, true},
		{"arp", layers.LinkTypeEthernet, eth(0x08, 0x06), ip4, false},
		{"sll", layers.LinkTypeLinuxSLL, append(make([]byte, 14), 0x08, 0x00), ip4, true},
		{"sll2", layers.LinkTypeLinuxSLL2, append([]byte{0x86, 0xdd}, make([]byte, 18)...), ip6, true},
		{"raw", layers.LinkTypeRaw, nil, ip4, true},
		{"loopback", layers.LinkTypeNull, []byte{2, 0, 0, 0}, ip4, true},
		{"raw not ip", layers.LinkTypeRaw, nil, []byte{0x10, 1, 2}, false},
		{"short ethernet", layers.LinkTypeEthernet, eth(0x08), nil, false},
		{"unknown link", layers.LinkType(147), nil, ip4, false},
	}
	for _, tc := range tests {
		got := LinkPayload(tc.lt, append(append([]byte(nil), tc.hdr...), tc.ip...))
		if tc.want != (got != nil) || (tc.want && !bytes.Equal(got, tc.ip)) {
			t.Errorf("%s: got % x", tc.name, got)
		}
	}
}

func TestPacketReader(t *testing.T) {
	if _, err := NewPacketReader(bytes.NewReader([]byte("abc"))); err == nil {
		t.Error("3 bytes: no error")
	}
	if _, err := NewPacketReader(bytes.NewReader([]byte("hello, world"))); err == nil {
		t.Error("text: no error")
	}
	// The DPI captures read back: every frame is IP.
	for _, name := range []string{"testdata/captures/tls-versions.pcap", "testdata/captures/unusual-ports.pcapng"} {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		pr, err := NewPacketReader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		n := 0
		for {
			p, ts, err := pr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if p[0]>>4 != 4 && p[0]>>4 != 6 || ts.IsZero() {
				t.Fatalf("%s: packet %d: % x at %v", name, n, p[:1], ts)
			}
			n++
		}
		if n == 0 || n != pr.Packets-pr.Skipped {
			t.Errorf("%s: %d packets, reader says %d read, %d skipped", name, n, pr.Packets, pr.Skipped)
		}
	}
}
