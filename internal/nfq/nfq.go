// Package nfq is a small NFQUEUE netlink client: it binds a queue in one
// network namespace (by descriptor), receives queued packets without
// allocating, and answers them with a verdict and a packet mark. The L7
// reader and the IDS reader share it.
package nfq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The NFQUEUE netlink protocol (linux/netfilter/nfnetlink_queue.h). The
// queue's messages are read and written here, on the socket's descriptor:
// packet messages end with the packet, so their length is rarely a multiple
// of four, which the netlink library's receive path does not accept.
const (
	msgPacket  = 0
	msgVerdict = 1
	msgConfig  = 2

	AttrPacketHdr  = 1
	attrVerdictHdr = 2
	attrMark       = 3
	attrInDev      = 5
	attrOutDev     = 6
	AttrPayload    = 10

	cfgCmd      = 1
	cfgParams   = 2
	cfgQueueMax = 3
	cfgMask     = 4
	cfgFlags    = 5

	cmdBind   = 1
	cmdUnbind = 2

	copyPacket = 2

	FlagFailOpen = 1
	FlagGSO      = 4

	// Verdicts (linux/netfilter.h). Repeat runs the packet through the
	// same hook's chain again, with the mark given.
	Drop   = 0
	Accept = 1
	Repeat = 4
)

// Packet is one packet message's attributes; Payload (the packet from
// its network header) aliases the receive buffer and is valid only during
// the Receive callback.
type Packet struct {
	ID            uint32
	Mark          uint32
	InDev, OutDev uint32 // interface indexes; 0 when absent
	Payload       []byte
	hasID         bool
}

// Conn is a bound queue. Receive and Verdict may not be called
// concurrently with themselves (one reader goroutine per queue).
type Conn struct {
	nl    *netlink.Conn
	raw   syscall.RawConn
	queue uint16
	buf   []byte
	out   []byte
	// kernel is the destination of sends, one per connection: Sendto
	// writes into it.
	kernel unix.SockaddrNetlink
}

// Open binds queue number q in the namespace of netns (0: the caller's)
// with the given NFQA_CFG flags (FlagFailOpen, FlagGSO).
func Open(q uint16, netns int, flags uint32) (*Conn, error) {
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	raw, err := nl.SyscallConn()
	if err != nil {
		nl.Close()
		return nil, err
	}
	qc := &Conn{nl: nl, raw: raw, queue: q, buf: make([]byte, 1<<17), out: make([]byte, 0, 64),
		kernel: unix.SockaddrNetlink{Family: unix.AF_NETLINK}}
	// Enough socket buffer for bursts of queued packets. The socket
	// blocks (see Receive), waking at least every PollInterval.
	var serr error
	raw.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		unix.SetsockoptInt(int(fd), unix.SOL_NETLINK, unix.NETLINK_NO_ENOBUFS, 1)
		tv := unix.NsecToTimeval(PollInterval.Nanoseconds())
		serr = unix.SetsockoptTimeval(int(fd), unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		if serr == nil {
			serr = unix.SetNonblock(int(fd), false)
		}
	})
	if serr != nil {
		nl.Close()
		return nil, fmt.Errorf("socket options: %w", serr)
	}
	// One message: bind (which creates the queue), copy the whole packet,
	// the queue length and the flags, acknowledged.
	var attrs []byte
	attrs = AppendAttr(attrs, cfgCmd, []byte{cmdBind, 0, 0, 0})
	params := binary.BigEndian.AppendUint32(nil, 0xffff)
	attrs = AppendAttr(attrs, cfgParams, append(params, copyPacket))
	attrs = AppendAttr(attrs, cfgQueueMax, binary.BigEndian.AppendUint32(nil, 4096))
	attrs = AppendAttr(attrs, cfgMask, binary.BigEndian.AppendUint32(nil, FlagFailOpen|FlagGSO))
	attrs = AppendAttr(attrs, cfgFlags, binary.BigEndian.AppendUint32(nil, flags))
	if err := qc.send(msgConfig, unix.NLM_F_REQUEST|unix.NLM_F_ACK, attrs); err != nil {
		nl.Close()
		return nil, fmt.Errorf("bind: %w", err)
	}
	return qc, nil
}

// Close unbinds the queue and closes the socket.
func (qc *Conn) Close() error {
	qc.send(msgConfig, unix.NLM_F_REQUEST, AppendAttr(nil, cfgCmd, []byte{cmdUnbind, 0, 0, 0}))
	return qc.nl.Close()
}

// PollInterval bounds how long a Receive blocks: how soon a reader sees
// that it should stop.
const PollInterval = 100 * time.Millisecond

func AppendAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// send writes one nfnetlink message of the queue subsystem.
func (qc *Conn) send(msg uint16, flags uint16, attrs []byte) error {
	b := qc.out[:0]
	b = binary.NativeEndian.AppendUint32(b, uint32(16+4+len(attrs)))
	b = binary.NativeEndian.AppendUint16(b, unix.NFNL_SUBSYS_QUEUE<<8|msg)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, 0) // sequence
	b = binary.NativeEndian.AppendUint32(b, 0) // port id: the kernel fills it
	b = append(b, unix.AF_UNSPEC, unix.NFNETLINK_V0)
	b = binary.BigEndian.AppendUint16(b, qc.queue)
	b = append(b, attrs...)
	qc.out = b[:0]
	var serr error
	err := qc.raw.Control(func(fd uintptr) {
		serr = unix.Sendto(int(fd), b, 0, &qc.kernel)
	})
	if err != nil {
		return err
	}
	return serr
}

// Queue is the queue number the connection is bound to.
func (qc *Conn) Queue() uint16 { return qc.queue }

// Verdict answers packet id (Accept, Drop, Repeat), setting its mark.
func (qc *Conn) Verdict(id uint32, verdict uint32, mark uint32) error {
	var attrs [24]byte
	b := AppendAttr(attrs[:0], attrVerdictHdr, binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, verdict), id))
	b = AppendAttr(b, attrMark, binary.BigEndian.AppendUint32(nil, mark))
	return qc.send(msgVerdict, unix.NLM_F_REQUEST, b)
}

// Receive reads one datagram of messages and calls fn for each packet; it
// returns after PollInterval without any. An acknowledgement with an error
// is returned as an error.
//
// It blocks in the kernel, on the caller's thread, rather than parking in
// Go's poller: every inspected connection waits for the reader's wake-up,
// and a blocked thread is woken by the kernel directly, where the poller
// adds an epoll round and a hand-off to another thread.
func (qc *Conn) Receive(fn func(*Packet)) error {
	var n int
	var rerr error
	err := qc.raw.Control(func(fd uintptr) {
		n, _, rerr = unix.Recvfrom(int(fd), qc.buf, 0)
	})
	if err != nil {
		return err
	}
	switch {
	case errors.Is(rerr, unix.EAGAIN), errors.Is(rerr, unix.EINTR):
		return nil // the poll interval passed
	case errors.Is(rerr, unix.ENOBUFS):
		return nil // packets were lost to the queue's own policy
	case rerr != nil:
		return rerr
	}
	return ParseMessages(qc.buf[:n], fn)
}

var errTruncated = errors.New("truncated netlink message")

// ParseMessages walks the netlink messages of one datagram, calling fn for
// each packet message; the Packet is reused between calls.
func ParseMessages(b []byte, fn func(*Packet)) error {
	var p Packet
	for len(b) >= 16 {
		l := int(binary.NativeEndian.Uint32(b))
		typ := binary.NativeEndian.Uint16(b[4:])
		if l < 16 || l > len(b) {
			return errTruncated
		}
		body := b[16:l]
		switch {
		case typ == unix.NLMSG_ERROR:
			if len(body) >= 4 {
				if code := int32(binary.NativeEndian.Uint32(body)); code != 0 {
					return fmt.Errorf("netlink: %w", syscall.Errno(-code))
				}
			}
		case typ == unix.NFNL_SUBSYS_QUEUE<<8|msgPacket && len(body) >= 4:
			p = Packet{}
			parsePacketAttrs(body[4:], &p)
			if p.hasID {
				fn(&p)
			}
		}
		next := (l + 3) &^ 3
		if next > len(b) {
			break
		}
		b = b[next:]
	}
	return nil
}

func parsePacketAttrs(b []byte, p *Packet) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:]) & 0x3fff
		if l < 4 || l > len(b) {
			return
		}
		d := b[4:l]
		switch typ {
		case AttrPacketHdr:
			if len(d) >= 4 {
				p.ID, p.hasID = binary.BigEndian.Uint32(d), true
			}
		case attrMark:
			if len(d) >= 4 {
				p.Mark = binary.BigEndian.Uint32(d)
			}
		case attrInDev:
			if len(d) >= 4 {
				p.InDev = binary.BigEndian.Uint32(d)
			}
		case attrOutDev:
			if len(d) >= 4 {
				p.OutDev = binary.BigEndian.Uint32(d)
			}
		case AttrPayload:
			p.Payload = d
		}
		next := (l + 3) &^ 3
		if next > len(b) {
			return
		}
		b = b[next:]
	}
}
