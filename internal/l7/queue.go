package l7

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
	nfqMsgPacket  = 0
	nfqMsgVerdict = 1
	nfqMsgConfig  = 2

	nfqaPacketHdr  = 1
	nfqaVerdictHdr = 2
	nfqaMark       = 3
	nfqaInDev      = 5
	nfqaOutDev     = 6
	nfqaPayload    = 10

	nfqaCfgCmd      = 1
	nfqaCfgParams   = 2
	nfqaCfgQueueMax = 3
	nfqaCfgMask     = 4
	nfqaCfgFlags    = 5

	nfqCfgCmdBind   = 1
	nfqCfgCmdUnbind = 2

	nfqCopyPacket = 2

	nfqFlagFailOpen = 1
	nfqFlagGSO      = 4

	// Verdicts (linux/netfilter.h).
	nfDrop   = 0
	nfAccept = 1
	nfRepeat = 4
)

// queuedPacket is one packet message's attributes; payload aliases the
// receive buffer.
type queuedPacket struct {
	id            uint32
	mark          uint32
	inDev, outDev uint32
	payload       []byte
	hasID         bool
}

// queueConn is a bound queue.
type queueConn struct {
	nl    *netlink.Conn
	raw   syscall.RawConn
	queue uint16
	buf   []byte
	out   []byte
	// kernel is the destination of sends, one per connection: Sendto
	// writes into it.
	kernel unix.SockaddrNetlink
}

// openQueue binds queue number q in the namespace of netns (0: the
// caller's) with the given NFQA_CFG flags.
func openQueue(q uint16, netns int, flags uint32) (*queueConn, error) {
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	raw, err := nl.SyscallConn()
	if err != nil {
		nl.Close()
		return nil, err
	}
	qc := &queueConn{nl: nl, raw: raw, queue: q, buf: make([]byte, 1<<17), out: make([]byte, 0, 64),
		kernel: unix.SockaddrNetlink{Family: unix.AF_NETLINK}}
	// Enough socket buffer for bursts of queued packets. The socket
	// blocks (see receive), waking at least every pollInterval.
	var serr error
	raw.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		unix.SetsockoptInt(int(fd), unix.SOL_NETLINK, unix.NETLINK_NO_ENOBUFS, 1)
		tv := unix.NsecToTimeval(pollInterval.Nanoseconds())
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
	attrs = appendAttr(attrs, nfqaCfgCmd, []byte{nfqCfgCmdBind, 0, 0, 0})
	params := binary.BigEndian.AppendUint32(nil, 0xffff)
	attrs = appendAttr(attrs, nfqaCfgParams, append(params, nfqCopyPacket))
	attrs = appendAttr(attrs, nfqaCfgQueueMax, binary.BigEndian.AppendUint32(nil, 4096))
	attrs = appendAttr(attrs, nfqaCfgMask, binary.BigEndian.AppendUint32(nil, nfqFlagFailOpen|nfqFlagGSO))
	attrs = appendAttr(attrs, nfqaCfgFlags, binary.BigEndian.AppendUint32(nil, flags))
	if err := qc.send(nfqMsgConfig, unix.NLM_F_REQUEST|unix.NLM_F_ACK, attrs); err != nil {
		nl.Close()
		return nil, fmt.Errorf("bind: %w", err)
	}
	return qc, nil
}

// Close unbinds the queue and closes the socket.
func (qc *queueConn) Close() error {
	qc.send(nfqMsgConfig, unix.NLM_F_REQUEST, appendAttr(nil, nfqaCfgCmd, []byte{nfqCfgCmdUnbind, 0, 0, 0}))
	return qc.nl.Close()
}

// pollInterval bounds how long a receive blocks: how soon a reader sees
// that it should stop.
const pollInterval = 100 * time.Millisecond

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// send writes one nfnetlink message of the queue subsystem.
func (qc *queueConn) send(msg uint16, flags uint16, attrs []byte) error {
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

// verdict answers packet id, setting its mark.
func (qc *queueConn) verdict(id uint32, verdict uint32, mark uint32) error {
	var attrs [24]byte
	b := appendAttr(attrs[:0], nfqaVerdictHdr, binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, verdict), id))
	b = appendAttr(b, nfqaMark, binary.BigEndian.AppendUint32(nil, mark))
	return qc.send(nfqMsgVerdict, unix.NLM_F_REQUEST, b)
}

// receive reads one datagram of messages and calls fn for each packet; it
// returns after pollInterval without any. An acknowledgement with an error
// is returned as an error.
//
// It blocks in the kernel, on the caller's thread, rather than parking in
// Go's poller: every inspected connection waits for the reader's wake-up,
// and a blocked thread is woken by the kernel directly, where the poller
// adds an epoll round and a hand-off to another thread.
func (qc *queueConn) receive(fn func(*queuedPacket)) error {
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
	return parseMessages(qc.buf[:n], fn)
}

var errTruncated = errors.New("truncated netlink message")

// parseMessages walks the netlink messages of one datagram.
func parseMessages(b []byte, fn func(*queuedPacket)) error {
	var p queuedPacket
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
		case typ == unix.NFNL_SUBSYS_QUEUE<<8|nfqMsgPacket && len(body) >= 4:
			p = queuedPacket{}
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

func parsePacketAttrs(b []byte, p *queuedPacket) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:]) & 0x3fff
		if l < 4 || l > len(b) {
			return
		}
		d := b[4:l]
		switch typ {
		case nfqaPacketHdr:
			if len(d) >= 4 {
				p.id, p.hasID = binary.BigEndian.Uint32(d), true
			}
		case nfqaMark:
			if len(d) >= 4 {
				p.mark = binary.BigEndian.Uint32(d)
			}
		case nfqaInDev:
			if len(d) >= 4 {
				p.inDev = binary.BigEndian.Uint32(d)
			}
		case nfqaOutDev:
			if len(d) >= 4 {
				p.outDev = binary.BigEndian.Uint32(d)
			}
		case nfqaPayload:
			p.payload = d
		}
		next := (l + 3) &^ 3
		if next > len(b) {
			return
		}
		b = b[next:]
	}
}
