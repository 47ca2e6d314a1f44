package apps

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// A minimal BER (X.690) codec: what an LDAP server needs, no more. Tags
// above 30 (multi-byte) and indefinite lengths are refused, as LDAP never
// uses them (RFC 4511 section 5.1).

const (
	berUniversal   = 0
	berApplication = 1
	berContext     = 2

	tagBoolean     = 1
	tagInteger     = 2
	tagOctetString = 4
	tagEnumerated  = 10
	tagSequence    = 16
	tagSet         = 17
)

// berNode is one decoded element; kids are decoded for constructed ones.
type berNode struct {
	class       byte
	constructed bool
	tag         int
	data        []byte
	kids        []berNode
}

var errBER = errors.New("ber: malformed element")

// readBERElement reads one whole element (header and content) of at most
// limit bytes.
func readBERElement(r *bufio.Reader, limit int) ([]byte, error) {
	hdr := make([]byte, 2, 8)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	if hdr[0]&0x1f == 0x1f {
		return nil, errBER
	}
	n := int(hdr[1])
	if n&0x80 != 0 {
		k := n & 0x7f
		if k == 0 || k > 4 {
			return nil, errBER
		}
		lb := make([]byte, k)
		if _, err := io.ReadFull(r, lb); err != nil {
			return nil, err
		}
		hdr = append(hdr, lb...)
		n = 0
		for _, b := range lb {
			n = n<<8 | int(b)
		}
	}
	if n > limit {
		return nil, fmt.Errorf("ber: element of %d bytes over the limit %d", n, limit)
	}
	buf := make([]byte, len(hdr)+n)
	copy(buf, hdr)
	if _, err := io.ReadFull(r, buf[len(hdr):]); err != nil {
		return nil, err
	}
	return buf, nil
}

// parseBER decodes one element from b and returns what follows it.
func parseBER(b []byte, depth int) (berNode, []byte, error) {
	if depth > 32 || len(b) < 2 {
		return berNode{}, nil, errBER
	}
	n := berNode{class: b[0] >> 6, constructed: b[0]&0x20 != 0, tag: int(b[0] & 0x1f)}
	if n.tag == 0x1f {
		return n, nil, errBER
	}
	l, i := int(b[1]), 2
	if l&0x80 != 0 {
		k := l & 0x7f
		if k == 0 || k > 4 || len(b) < 2+k {
			return n, nil, errBER
		}
		l = 0
		for _, x := range b[2 : 2+k] {
			l = l<<8 | int(x)
		}
		i += k
	}
	if l < 0 || len(b)-i < l {
		return n, nil, errBER
	}
	n.data = b[i : i+l]
	rest := b[i+l:]
	if n.constructed {
		for c := n.data; len(c) > 0; {
			kid, r, err := parseBER(c, depth+1)
			if err != nil {
				return n, nil, err
			}
			n.kids = append(n.kids, kid)
			c = r
		}
	}
	return n, rest, nil
}

func (n berNode) is(class byte, tag int) bool { return n.class == class && n.tag == tag }

func (n berNode) str() string { return string(n.data) }

// int decodes an INTEGER or ENUMERATED (at most 8 bytes).
func (n berNode) int() (int64, error) {
	if len(n.data) == 0 || len(n.data) > 8 || n.constructed {
		return 0, errBER
	}
	v := int64(int8(n.data[0]))
	for _, b := range n.data[1:] {
		v = v<<8 | int64(b)
	}
	return v, nil
}

func berLen(n int) []byte {
	switch {
	case n < 0x80:
		return []byte{byte(n)}
	case n < 0x100:
		return []byte{0x81, byte(n)}
	case n < 0x10000:
		return []byte{0x82, byte(n >> 8), byte(n)}
	case n < 0x1000000:
		return []byte{0x83, byte(n >> 16), byte(n >> 8), byte(n)}
	}
	return []byte{0x84, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

// berTLV encodes one element from its content.
func berTLV(class byte, constructed bool, tag int, content []byte) []byte {
	id := class<<6 | byte(tag)
	if constructed {
		id |= 0x20
	}
	out := append([]byte{id}, berLen(len(content))...)
	return append(out, content...)
}

func berCons(class byte, tag int, kids ...[]byte) []byte {
	var c []byte
	for _, k := range kids {
		c = append(c, k...)
	}
	return berTLV(class, true, tag, c)
}

func berSeq(kids ...[]byte) []byte { return berCons(berUniversal, tagSequence, kids...) }

func berSetOf(kids ...[]byte) []byte { return berCons(berUniversal, tagSet, kids...) }

func berOctets(s string) []byte { return berTLV(berUniversal, false, tagOctetString, []byte(s)) }

func berIntTag(class byte, tag int, v int64) []byte {
	var b []byte
	for {
		b = append([]byte{byte(v)}, b...)
		if (v >= -128 && v < 128) || len(b) == 8 {
			break
		}
		v >>= 8
	}
	return berTLV(class, false, tag, b)
}

func berInt(v int64) []byte { return berIntTag(berUniversal, tagInteger, v) }

func berEnum(v int) []byte { return berIntTag(berUniversal, tagEnumerated, int64(v)) }

func berBool(v bool) []byte {
	if v {
		return berTLV(berUniversal, false, tagBoolean, []byte{0xff})
	}
	return berTLV(berUniversal, false, tagBoolean, []byte{0})
}
