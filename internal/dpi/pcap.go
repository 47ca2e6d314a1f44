package dpi

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// CaptureFlow is one flow of a capture as the engine saw it.
type CaptureFlow struct {
	// Proto is TCP or UDP; Client sent the SYN (or the first packet).
	Proto          uint8
	Client, Server netip.AddrPort
	First, Last    time.Time
	// Packets and Bytes count both directions at the IP layer, as
	// conntrack does; Payload counts the TCP/UDP payload bytes.
	Packets, Bytes, Payload uint64
	Result                  Result
	// JA3 is the ClientHello's JA3 string (Result.JA3 is its MD5).
	JA3 string
}

// Capture is what ReadCapture found.
type Capture struct {
	Flows []CaptureFlow
	// Packets is every packet read; Skipped those that were not TCP or UDP
	// over IPv4/IPv6 on a known link type, or were IP fragments.
	Packets, Skipped int
	// Truncated says the file ended inside a packet (a capture cut short);
	// what came before is in Flows.
	Truncated bool
}

// Bounds of the capture reader's TCP reassembly.
const (
	maxPending      = 8       // out-of-order segments held per direction
	maxPendingBytes = 1 << 16 // bytes held per direction
)

// ReadCapture reads a pcap or pcapng capture (Ethernet, 802.1Q, Linux
// SLL/SLL2, raw IP, BSD loopback; IPv4 and IPv6; TCP and UDP) and runs the
// engine on every flow: TCP payload in sequence order (retransmissions
// dropped, out-of-order segments held a little), each UDP datagram as it
// is. Flows are in the order their first packet appeared.
func ReadCapture(r io.Reader) (*Capture, error) {
	return readCapture(r, nil)
}

// tapFunc sees every payload the engine is fed (flow index, direction).
type tapFunc func(flow int, proto uint8, dir Dir, payload []byte)

type packetSource interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

func readCapture(r io.Reader, tap tapFunc) (*Capture, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, errors.New("dpi: not a pcap or pcapng capture: file too short")
	}
	var src packetSource
	linkOf := func(gopacket.CaptureInfo) layers.LinkType { return 0 }
	switch binary.LittleEndian.Uint32(magic) {
	case 0x0A0D0D0A:
		ng, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return nil, fmt.Errorf("dpi: pcapng: %w", err)
		}
		src = ng
		linkOf = func(ci gopacket.CaptureInfo) layers.LinkType {
			i, err := ng.Interface(ci.InterfaceIndex)
			if err != nil {
				return 0xffff
			}
			return i.LinkType
		}
	case 0xA1B2C3D4, 0xD4C3B2A1, 0xA1B23C4D, 0x4D3CB2A1:
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("dpi: pcap: %w", err)
		}
		src = pr
		lt := pr.LinkType()
		linkOf = func(gopacket.CaptureInfo) layers.LinkType { return lt }
	default:
		return nil, fmt.Errorf("dpi: not a pcap or pcapng capture (starts with % x)", magic)
	}
	t := newTable(tap)
	out := &Capture{}
	for {
		data, ci, err := src.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			out.Truncated = true
			break
		}
		if err != nil {
			return nil, fmt.Errorf("dpi: packet %d: %w", out.Packets+1, err)
		}
		out.Packets++
		if !t.packet(linkOf(ci), data, ci.Timestamp) {
			out.Skipped++
		}
	}
	out.Flows = t.finish()
	return out, nil
}

// decoder turns one link type's frames into IP/TCP/UDP layers.
type decoder struct {
	eth      layers.Ethernet
	dot1q    layers.Dot1Q
	sll      layers.LinuxSLL
	sll2     layers.LinuxSLL2
	loop     layers.Loopback
	ip4      layers.IPv4
	ip6      layers.IPv6
	tcp      layers.TCP
	udp      layers.UDP
	payload  gopacket.Payload
	parsers  map[gopacket.LayerType]*gopacket.DecodingLayerParser
	decoded  []gopacket.LayerType
	tcpValid bool
}

func (d *decoder) parser(first gopacket.LayerType) *gopacket.DecodingLayerParser {
	if p := d.parsers[first]; p != nil {
		return p
	}
	p := gopacket.NewDecodingLayerParser(first, &d.eth, &d.dot1q, &d.sll, &d.sll2, &d.loop, &d.ip4, &d.ip6, &d.tcp, &d.udp, &d.payload)
	p.IgnoreUnsupported = true
	d.parsers[first] = p
	return p
}

// flowKey is a flow's 5-tuple in canonical order (lower endpoint first).
type flowKey struct {
	proto uint8
	a, b  netip.AddrPort
}

type half struct {
	next    uint32 // next expected sequence number
	synced  bool
	fin     bool
	pending []segment
	held    int
}

type segment struct {
	seq  uint32
	data []byte
}

type tableFlow struct {
	idx    int
	engine *Flow // nil once the engine is done
	tcp    [2]half
	closed bool
}

type table struct {
	dec   decoder
	flows map[flowKey]*tableFlow
	out   []CaptureFlow
	tap   tapFunc
	pool  sync.Pool
}

func newTable(tap tapFunc) *table {
	t := &table{flows: map[flowKey]*tableFlow{}, tap: tap}
	t.dec.parsers = map[gopacket.LayerType]*gopacket.DecodingLayerParser{}
	t.pool.New = func() any { return new(Flow) }
	return t
}

// packet handles one frame; false means it was skipped.
func (t *table) packet(lt layers.LinkType, data []byte, ts time.Time) bool {
	var first gopacket.LayerType
	switch lt {
	case layers.LinkTypeEthernet:
		first = layers.LayerTypeEthernet
	case layers.LinkTypeLinuxSLL:
		first = layers.LayerTypeLinuxSLL
	case layers.LinkTypeLinuxSLL2:
		first = layers.LayerTypeLinuxSLL2
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		first = layers.LayerTypeLoopback
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6, 12, 14:
		if len(data) == 0 {
			return false
		}
		first = layers.LayerTypeIPv4
		if data[0]>>4 == 6 {
			first = layers.LayerTypeIPv6
		}
	default:
		return false
	}
	d := &t.dec
	if err := d.parser(first).DecodeLayers(data, &d.decoded); err != nil {
		return false
	}
	var src, dst netip.Addr
	var ipLen int
	var l4 gopacket.LayerType
	for _, lt := range d.decoded {
		switch lt {
		case layers.LayerTypeIPv4:
			if d.ip4.Flags&layers.IPv4MoreFragments != 0 || d.ip4.FragOffset != 0 {
				return false
			}
			src, _ = netip.AddrFromSlice(d.ip4.SrcIP.To4())
			dst, _ = netip.AddrFromSlice(d.ip4.DstIP.To4())
			ipLen = int(d.ip4.Length)
		case layers.LayerTypeIPv6:
			src, _ = netip.AddrFromSlice(d.ip6.SrcIP)
			dst, _ = netip.AddrFromSlice(d.ip6.DstIP)
			ipLen = int(d.ip6.Length) + 40
		case layers.LayerTypeTCP, layers.LayerTypeUDP:
			l4 = lt
		}
	}
	if !src.IsValid() || !dst.IsValid() || l4 == 0 {
		return false
	}
	var proto uint8
	var sp, dp uint16
	var payload []byte
	if l4 == layers.LayerTypeTCP {
		proto, sp, dp, payload = TCP, uint16(d.tcp.SrcPort), uint16(d.tcp.DstPort), d.tcp.Payload
	} else {
		proto, sp, dp, payload = UDP, uint16(d.udp.SrcPort), uint16(d.udp.DstPort), d.udp.Payload
	}
	s, o := netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp)
	key := flowKey{proto, s, o}
	if o.Addr().Less(s.Addr()) || (o.Addr() == s.Addr() && dp < sp) {
		key.a, key.b = o, s
	}
	syn := proto == TCP && d.tcp.SYN && !d.tcp.ACK
	tf := t.flows[key]
	if tf != nil && syn && tf.closed {
		t.done(tf)
		tf = nil // a new connection on the same 5-tuple
	}
	if tf == nil {
		client, server := s, o
		if proto == TCP && d.tcp.SYN && d.tcp.ACK {
			client, server = o, s // the capture began after the SYN
		}
		e := t.pool.Get().(*Flow)
		e.Reset(proto)
		tf = &tableFlow{idx: len(t.out), engine: e}
		t.out = append(t.out, CaptureFlow{Proto: proto, Client: client, Server: server, First: ts})
		t.flows[key] = tf
	}
	cf := &t.out[tf.idx]
	dir := Client
	if s != cf.Client {
		dir = Server
	}
	cf.Last = ts
	cf.Packets++
	cf.Bytes += uint64(ipLen)
	cf.Payload += uint64(len(payload))
	if proto == UDP {
		t.feed(tf, dir, payload)
		return true
	}
	h := &tf.tcp[dir]
	seq := d.tcp.Seq
	if d.tcp.SYN {
		h.next, h.synced = seq+1, true
		return true
	}
	if d.tcp.RST || d.tcp.FIN {
		tf.closed = tf.closed || d.tcp.RST || (d.tcp.FIN && tf.tcp[dir.other()].fin)
		h.fin = h.fin || d.tcp.FIN
	}
	if len(payload) == 0 || tf.engine == nil {
		return true
	}
	if !h.synced {
		h.next, h.synced = seq, true
	}
	t.segment(tf, dir, seq, payload)
	return true
}

// segment delivers TCP payload in sequence order.
func (t *table) segment(tf *tableFlow, dir Dir, seq uint32, p []byte) {
	h := &tf.tcp[dir]
	if d := int32(h.next - seq); d > 0 {
		if d >= int32(len(p)) {
			return // a retransmission
		}
		p, seq = p[d:], h.next
	}
	if seq != h.next {
		if len(h.pending) < maxPending && h.held+len(p) <= maxPendingBytes {
			h.pending = append(h.pending, segment{seq, append([]byte(nil), p...)})
			h.held += len(p)
		}
		return
	}
	t.feed(tf, dir, p)
	h.next += uint32(len(p))
	for progress := true; progress && tf.engine != nil; {
		progress = false
		for i := 0; i < len(h.pending); i++ {
			s := h.pending[i]
			d := int32(h.next - s.seq)
			if d < 0 {
				continue
			}
			h.pending = append(h.pending[:i], h.pending[i+1:]...)
			h.held -= len(s.data)
			if d < int32(len(s.data)) {
				t.feed(tf, dir, s.data[d:])
				h.next += uint32(len(s.data)) - uint32(d)
			}
			progress = true
			break
		}
	}
}

func (t *table) feed(tf *tableFlow, dir Dir, p []byte) {
	if tf.engine == nil || len(p) == 0 {
		return
	}
	if t.tap != nil {
		t.tap(tf.idx, t.out[tf.idx].Proto, dir, p)
	}
	if _, done := tf.engine.Feed(dir, p); done {
		t.done(tf)
	}
}

// done keeps the engine's result and returns its state to the pool.
func (t *table) done(tf *tableFlow) {
	if tf.engine == nil {
		return
	}
	cf := &t.out[tf.idx]
	cf.Result = *tf.engine.Finish()
	cf.JA3 = string(tf.engine.JA3String())
	t.pool.Put(tf.engine)
	tf.engine = nil
	tf.tcp[0].pending, tf.tcp[1].pending = nil, nil
}

func (t *table) finish() []CaptureFlow {
	for _, tf := range t.flows {
		t.done(tf)
	}
	return t.out
}
