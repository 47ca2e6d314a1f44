package dnssnoop

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// DNS constants this package reads.
const (
	TypeA     uint16 = 1
	TypeCNAME uint16 = 5
	TypeAAAA  uint16 = 28
	ClassIN   uint16 = 1

	// MaxNameLen is the longest name in text form: 255 bytes on the wire
	// (length bytes and the root included) are at most 253 characters.
	MaxNameLen = 253

	headerLen = 12
	// maxPointers bounds the compression pointers followed in one name. A
	// name of at most 127 labels needs no more; pointers must also point
	// backwards, so a loop is impossible anyway.
	maxPointers = 127
)

// Parse errors. Parser.Offset says where in the message the error was found.
var (
	ErrShort        = errors.New("dnssnoop: message shorter than its contents")
	ErrNotResponse  = errors.New("dnssnoop: not a response")
	ErrLabelLen     = errors.New("dnssnoop: label type or length invalid")
	ErrNameLen      = errors.New("dnssnoop: name longer than 255 bytes")
	ErrPointer      = errors.New("dnssnoop: compression pointer does not point backwards")
	ErrNameChar     = errors.New("dnssnoop: name has a byte that cannot be written in text")
	ErrRDataLen     = errors.New("dnssnoop: record data length does not fit its type")
	ErrNoQuestion   = errors.New("dnssnoop: response without exactly one question")
	ErrSectionCount = errors.New("dnssnoop: section count exceeds the message")
)

// Header is the fixed part of a DNS message.
type Header struct {
	ID        uint16
	Response  bool
	Opcode    uint8
	Truncated bool
	RCode     uint8
	QDCount   uint16
	ANCount   uint16
	NSCount   uint16
	ARCount   uint16
}

// Name is a decoded domain name in the form policy compares: lower case,
// labels joined by dots, no final dot ("" is the root). It lives in a fixed
// array, so decoding one allocates nothing.
type Name struct {
	buf [MaxNameLen]byte
	n   uint8
}

// Bytes returns the name's text; it is valid until the Name changes.
func (n *Name) Bytes() []byte { return n.buf[:n.n] }

// String returns the name's text (allocates).
func (n *Name) String() string { return string(n.buf[:n.n]) }

// Equal reports whether two names are the same.
func (n *Name) Equal(o *Name) bool { return string(n.Bytes()) == string(o.Bytes()) }

// Set replaces the name by s, normalized; it is for tests and callers that
// already hold a name in text. It returns false if s cannot be a name.
func (n *Name) Set(s string) bool {
	if len(s) > 0 && s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	if len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		n.buf[i] = lower(s[i])
	}
	n.n = uint8(len(s))
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// Record is one answer this package uses: A, AAAA or CNAME of class IN.
type Record struct {
	Name Name
	Type uint16
	TTL  uint32
	// Addr is the address of an A or AAAA record.
	Addr netip.Addr
	// Target is a CNAME's canonical name.
	Target Name
}

// Parser reads a DNS response in place. The zero value is ready; Start
// (re)starts it on a message. Nothing it does allocates.
type Parser struct {
	msg     []byte
	off     int
	errOff  int
	h       Header
	qLeft   int
	anLeft  int
	skipped int
}

// Offset is where the last error was found.
func (p *Parser) Offset() int { return p.errOff }

// Skipped counts the answers of other types or classes passed over so far.
func (p *Parser) Skipped() int { return p.skipped }

func (p *Parser) fail(off int, err error) error {
	p.errOff = off
	p.anLeft, p.qLeft = 0, 0
	return err
}

// Start reads the header of msg and positions the parser at the question
// section. Messages that are not responses are refused.
func (p *Parser) Start(msg []byte) (Header, error) {
	*p = Parser{msg: msg}
	if len(msg) < headerLen {
		return Header{}, p.fail(len(msg), ErrShort)
	}
	flags := binary.BigEndian.Uint16(msg[2:])
	h := Header{
		ID:        binary.BigEndian.Uint16(msg),
		Response:  flags&0x8000 != 0,
		Opcode:    uint8(flags>>11) & 0xf,
		Truncated: flags&0x0200 != 0,
		RCode:     uint8(flags & 0xf),
		QDCount:   binary.BigEndian.Uint16(msg[4:]),
		ANCount:   binary.BigEndian.Uint16(msg[6:]),
		NSCount:   binary.BigEndian.Uint16(msg[8:]),
		ARCount:   binary.BigEndian.Uint16(msg[10:]),
	}
	if !h.Response {
		return h, p.fail(2, ErrNotResponse)
	}
	// A question takes at least 5 bytes and a record 11: counts that cannot
	// fit are refused before any loop trusts them.
	if int(h.QDCount)*5+int(h.ANCount)*11 > len(msg)-headerLen {
		return h, p.fail(4, ErrSectionCount)
	}
	p.h, p.off, p.qLeft, p.anLeft = h, headerLen, int(h.QDCount), int(h.ANCount)
	return h, nil
}

// Question reads the next question into name; ok is false when none is left.
func (p *Parser) Question(name *Name) (qtype, qclass uint16, ok bool, err error) {
	if p.qLeft == 0 {
		return 0, 0, false, nil
	}
	end, err := p.name(p.off, name)
	if err != nil {
		return 0, 0, false, err
	}
	if end+4 > len(p.msg) {
		return 0, 0, false, p.fail(end, ErrShort)
	}
	qtype = binary.BigEndian.Uint16(p.msg[end:])
	qclass = binary.BigEndian.Uint16(p.msg[end+2:])
	p.off = end + 4
	p.qLeft--
	return qtype, qclass, true, nil
}

// Answer reads the next A, AAAA or CNAME answer of class IN into r,
// skipping others; ok is false at the end of the answer section.
func (p *Parser) Answer(r *Record) (ok bool, err error) {
	for p.qLeft > 0 {
		end, err := p.name(p.off, nil)
		if err != nil {
			return false, err
		}
		if end+4 > len(p.msg) {
			return false, p.fail(end, ErrShort)
		}
		p.off = end + 4
		p.qLeft--
	}
	for p.anLeft > 0 {
		start := p.off
		end, err := p.name(start, nil)
		if err != nil {
			return false, err
		}
		if end+10 > len(p.msg) {
			return false, p.fail(end, ErrShort)
		}
		typ := binary.BigEndian.Uint16(p.msg[end:])
		class := binary.BigEndian.Uint16(p.msg[end+2:])
		ttl := binary.BigEndian.Uint32(p.msg[end+4:])
		rdlen := int(binary.BigEndian.Uint16(p.msg[end+8:]))
		rd := end + 10
		if rd+rdlen > len(p.msg) {
			return false, p.fail(end+8, ErrShort)
		}
		p.off = rd + rdlen
		p.anLeft--
		if class != ClassIN || (typ != TypeA && typ != TypeAAAA && typ != TypeCNAME) {
			p.skipped++
			continue
		}
		// RFC 2181: a TTL with the top bit set is read as 0.
		if ttl > 1<<31-1 {
			ttl = 0
		}
		r.Type, r.TTL, r.Addr, r.Target.n = typ, ttl, netip.Addr{}, 0
		switch typ {
		case TypeA:
			if rdlen != 4 {
				return false, p.fail(end+8, ErrRDataLen)
			}
			r.Addr = netip.AddrFrom4([4]byte(p.msg[rd : rd+4]))
		case TypeAAAA:
			if rdlen != 16 {
				return false, p.fail(end+8, ErrRDataLen)
			}
			r.Addr = netip.AddrFrom16([16]byte(p.msg[rd : rd+16]))
		case TypeCNAME:
			// The name must end where the rdata does: read it from the
			// message cut there, so running past the rdata is a length
			// error rather than reading the next record.
			full := p.msg
			p.msg = full[:rd+rdlen]
			tend, err := p.name(rd, &r.Target)
			p.msg = full
			if errors.Is(err, ErrShort) {
				err = ErrRDataLen
			}
			if err != nil {
				return false, err
			}
			if tend != rd+rdlen {
				return false, p.fail(end+8, ErrRDataLen)
			}
		}
		if _, err := p.name(start, &r.Name); err != nil {
			return false, err
		}
		return true, nil
	}
	return false, nil
}

// name reads the name at off, into out if not nil, and returns where the
// name ends in place (after its first pointer, or its root label).
func (p *Parser) name(off int, out *Name) (int, error) {
	msg := p.msg
	end := -1    // where the name ends in place, once a pointer was taken
	wire := 0    // wire length, length bytes and root included
	n := 0       // text length written to out
	limit := off // a pointer must point before where this stretch began
	pointers := 0
	for {
		if off >= len(msg) {
			return 0, p.fail(off, ErrShort)
		}
		c := int(msg[off])
		switch c & 0xc0 {
		case 0x00:
		case 0xc0:
			if off+1 >= len(msg) {
				return 0, p.fail(off, ErrShort)
			}
			ptr := (c&0x3f)<<8 | int(msg[off+1])
			if ptr >= limit || pointers == maxPointers {
				return 0, p.fail(off, ErrPointer)
			}
			pointers++
			if end < 0 {
				end = off + 2
			}
			off, limit = ptr, ptr
			continue
		default:
			return 0, p.fail(off, ErrLabelLen)
		}
		wire += c + 1
		// A label must leave room for the root label's byte.
		if wire > 255 || (c != 0 && wire > 254) {
			return 0, p.fail(off, ErrNameLen)
		}
		if c == 0 {
			if end < 0 {
				end = off + 1
			}
			if out != nil {
				out.n = uint8(n)
			}
			return end, nil
		}
		if off+1+c > len(msg) {
			return 0, p.fail(off, ErrShort)
		}
		if out != nil {
			if n > 0 {
				out.buf[n] = '.'
				n++
			}
			for _, b := range msg[off+1 : off+1+c] {
				if b <= ' ' || b == '.' || b >= 0x7f {
					return 0, p.fail(off, ErrNameChar)
				}
				out.buf[n] = lower(b)
				n++
			}
		}
		off += 1 + c
	}
}

// MaxRecords is how many A, AAAA and CNAME answers of one response an
// Answer keeps; more are counted in Answer.Dropped.
const MaxRecords = 64

// Answer is one response reduced to what the cache needs. Reuse one per
// reader: once its record array exists, Parse allocates nothing.
type Answer struct {
	Header   Header
	Question Name
	QType    uint16
	QClass   uint16
	Records  []Record
	// Dropped counts A/AAAA/CNAME answers beyond MaxRecords.
	Dropped int
	p       Parser
}

// Parse reads msg, a whole DNS response (a UDP payload, or a TCP message
// without its length prefix). It needs exactly one question. Errors are the
// sentinels above, unwrapped, because hostile input can drive this path at
// line rate; Describe adds the byte offset for a log line.
func (a *Answer) Parse(msg []byte) error {
	if a.Records == nil {
		a.Records = make([]Record, 0, MaxRecords)
	}
	a.Records, a.Dropped = a.Records[:0], 0
	h, err := a.p.Start(msg)
	a.Header = h
	if err != nil {
		return err
	}
	if h.QDCount != 1 {
		return a.p.fail(4, ErrNoQuestion)
	}
	if a.QType, a.QClass, _, err = a.p.Question(&a.Question); err != nil {
		return err
	}
	var r *Record
	var spare Record
	for {
		if len(a.Records) < cap(a.Records) {
			a.Records = a.Records[:len(a.Records)+1]
			r = &a.Records[len(a.Records)-1]
		} else {
			r = &spare
		}
		ok, err := a.p.Answer(r)
		if err != nil || !ok {
			if r != &spare {
				a.Records = a.Records[:len(a.Records)-1]
			}
			return err
		}
		if r == &spare {
			a.Dropped++
		}
	}
}

// ParseError is a parse error with the byte offset it was found at.
type ParseError struct {
	Offset int
	Err    error
}

func (e *ParseError) Error() string { return fmt.Sprintf("%v (at byte %d)", e.Err, e.Offset) }
func (e *ParseError) Unwrap() error { return e.Err }

// Offset is the byte at which the last Parse error was found.
func (a *Answer) Offset() int { return a.p.Offset() }

// Describe formats the last Parse error with its offset, for logs.
func (a *Answer) Describe(err error) error {
	if err == nil {
		return nil
	}
	return &ParseError{Offset: a.p.Offset(), Err: err}
}
