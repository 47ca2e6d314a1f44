package dpi

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// PacketReader reads the IP packets of a pcap or pcapng capture, the
// link-layer header removed, for engines that keep their own flow state
// (the IDS). It knows the link types ReadCapture knows.
type PacketReader struct {
	src    packetSource
	linkOf func(ifIndex int) layers.LinkType
	// Packets counts the frames read, Skipped those that carried no IP
	// packet (another link type or ethertype).
	Packets, Skipped int
	// Truncated says the file ended inside a packet.
	Truncated bool
}

// NewPacketReader starts reading a capture.
func NewPacketReader(r io.Reader) (*PacketReader, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, errors.New("capture: not a pcap or pcapng capture: file too short")
	}
	pr := &PacketReader{}
	switch binary.LittleEndian.Uint32(magic) {
	case 0x0A0D0D0A:
		ng, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return nil, fmt.Errorf("capture: pcapng: %w", err)
		}
		pr.src = ng
		pr.linkOf = func(ifIndex int) layers.LinkType {
			i, err := ng.Interface(ifIndex)
			if err != nil {
				return 0xffff
			}
			return i.LinkType
		}
	case 0xA1B2C3D4, 0xD4C3B2A1, 0xA1B23C4D, 0x4D3CB2A1:
		r, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("capture: pcap: %w", err)
		}
		pr.src = r
		lt := r.LinkType()
		pr.linkOf = func(int) layers.LinkType { return lt }
	default:
		return nil, fmt.Errorf("capture: not a pcap or pcapng capture (starts with % x)", magic)
	}
	return pr, nil
}

// Next returns the next frame's IP packet (IPv4 or IPv6, from the IP
// header) and its timestamp; io.EOF at the end (also when the file ends
// inside a packet: Truncated says so). Frames without an IP packet are
// counted in Skipped and passed over. The packet is valid until the next
// call.
func (pr *PacketReader) Next() ([]byte, time.Time, error) {
	for {
		data, ci, err := pr.src.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return nil, time.Time{}, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			pr.Truncated = true
			return nil, time.Time{}, io.EOF
		}
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("capture: packet %d: %w", pr.Packets+1, err)
		}
		pr.Packets++
		ip := LinkPayload(pr.linkOf(ci.InterfaceIndex), data)
		if ip == nil {
			pr.Skipped++
			continue
		}
		return ip, ci.Timestamp, nil
	}
}

// LinkPayload strips a frame's link-layer header: the IPv4 or IPv6 packet
// it carries, or nil. Ethernet (with 802.1Q/802.1ad tags), Linux SLL and
// SLL2, raw IP and BSD loopback.
func LinkPayload(lt layers.LinkType, b []byte) []byte {
	var et uint16
	switch lt {
	case layers.LinkTypeEthernet:
		if len(b) < 14 {
			return nil
		}
		et, b = binary.BigEndian.Uint16(b[12:14]), b[14:]
		for et == 0x8100 || et == 0x88a8 {
			if len(b) < 4 {
				return nil
			}
			et, b = binary.BigEndian.Uint16(b[2:4]), b[4:]
		}
	case layers.LinkTypeLinuxSLL:
		if len(b) < 16 {
			return nil
		}
		et, b = binary.BigEndian.Uint16(b[14:16]), b[16:]
	case layers.LinkTypeLinuxSLL2:
		if len(b) < 20 {
			return nil
		}
		et, b = binary.BigEndian.Uint16(b[0:2]), b[20:]
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		if len(b) < 4 {
			return nil
		}
		b = b[4:]
		return ipVersioned(b)
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6, 12, 14:
		return ipVersioned(b)
	default:
		return nil
	}
	switch et {
	case 0x0800, 0x86dd:
		return ipVersioned(b)
	}
	return nil
}

func ipVersioned(b []byte) []byte {
	if len(b) == 0 || (b[0]>>4 != 4 && b[0]>>4 != 6) {
		return nil
	}
	return b
}
