// Package ports parses port specs ("tcp/443", "tcp/8000-8100", "icmp/3/4",
// "any") into numeric protocol, port range and ICMP type/code, and matches
// packets against them without allocating.
package ports

import (
	"fmt"
	"strconv"
	"strings"
)

// IP protocol numbers of the protocols that have names in port specs.
const (
	ICMP   uint8 = 1
	TCP    uint8 = 6
	UDP    uint8 = 17
	ICMPv6 uint8 = 58
	SCTP   uint8 = 132
)

// Any is the ICMP type or code that matches every value.
const Any int16 = -1

// Spec is one parsed port spec.
type Spec struct {
	Proto uint8 // 0 = any protocol
	// Lo and Hi bound the destination port range; they apply to TCP, UDP and
	// SCTP only. Every port is 0-65535.
	Lo, Hi uint16
	// ICMPType and ICMPCode apply to ICMP and ICMPv6 only; -1 = any.
	ICMPType, ICMPCode int16
}

var names = []struct {
	name  string
	proto uint8
}{
	{"tcp", TCP}, {"udp", UDP}, {"sctp", SCTP}, {"icmp", ICMP}, {"icmpv6", ICMPv6},
}

// ProtoName returns the name a port spec uses for proto: "tcp", "icmpv6",
// "any" for 0, or "proto/N" for a protocol without a name.
func ProtoName(proto uint8) string {
	if proto == 0 {
		return "any"
	}
	for _, n := range names {
		if n.proto == proto {
			return n.name
		}
	}
	return "proto/" + strconv.Itoa(int(proto))
}

// HasPorts reports whether proto carries ports that a spec can restrict.
func HasPorts(proto uint8) bool { return proto == TCP || proto == UDP || proto == SCTP }

// IsICMP reports whether proto is ICMP or ICMPv6, whose specs restrict type
// and code.
func IsICMP(proto uint8) bool { return proto == ICMP || proto == ICMPv6 }

// AnySpec matches every packet; it is what "any" parses to.
func AnySpec() Spec { return Spec{Lo: 0, Hi: 65535, ICMPType: Any, ICMPCode: Any} }

// Parse parses a port spec:
//
//	any                     every protocol
//	tcp, udp, sctp          every port of the protocol
//	tcp/443, tcp/8000-8100  a port or an inclusive range (also udp, sctp)
//	icmp, icmp/8, icmp/3/4  ICMP, of a type, of a type and code (also icmpv6)
//	proto/47                any other IP protocol by number
//
// Protocol names are case-insensitive.
func Parse(s string) (Spec, error) {
	spec := AnySpec()
	s = strings.TrimSpace(s)
	if s == "" {
		return Spec{}, fmt.Errorf("empty port spec")
	}
	written, rest, hasRest := strings.Cut(s, "/")
	name := strings.ToLower(written)
	switch name {
	case "any":
		if hasRest {
			return Spec{}, fmt.Errorf("bad port spec %q: \"any\" takes no port", s)
		}
		return spec, nil
	case "proto":
		num, more, hasMore := strings.Cut(rest, "/")
		if !hasRest || num == "" {
			return Spec{}, fmt.Errorf("bad port spec %q: expected a protocol number after \"proto/\"", s)
		}
		n, ok := parseUint(num, 255)
		if !ok {
			return Spec{}, fmt.Errorf("bad protocol number %q in %q: want 1-255", num, s)
		}
		if n == 0 {
			return Spec{}, fmt.Errorf("bad port spec %q: protocol 0 is reserved; write \"any\" for every protocol", s)
		}
		spec.Proto = uint8(n)
		if hasMore {
			// proto/6/443 is tcp/443 said the long way round.
			if HasPorts(spec.Proto) || IsICMP(spec.Proto) {
				return parseDetail(spec, more, s)
			}
			return Spec{}, fmt.Errorf("bad port spec %q: protocol %d has no ports", s, n)
		}
		return spec, nil
	}
	for _, n := range names {
		if n.name == name {
			spec.Proto = n.proto
			if !hasRest {
				return spec, nil
			}
			return parseDetail(spec, rest, s)
		}
	}
	return Spec{}, fmt.Errorf("unknown protocol %q", written)
}

// parseDetail parses what follows "proto/": a port range or ICMP type/code.
func parseDetail(spec Spec, rest, s string) (Spec, error) {
	if IsICMP(spec.Proto) {
		typ, code, hasCode := strings.Cut(rest, "/")
		t, ok := parseUint(typ, 255)
		if !ok {
			return Spec{}, fmt.Errorf("bad ICMP type %q in %q: want 0-255", typ, s)
		}
		spec.ICMPType = int16(t)
		if hasCode {
			c, ok := parseUint(code, 255)
			if !ok {
				return Spec{}, fmt.Errorf("bad ICMP code %q in %q: want 0-255", code, s)
			}
			spec.ICMPCode = int16(c)
		}
		return spec, nil
	}
	if strings.Contains(rest, "/") {
		return Spec{}, fmt.Errorf("bad port spec %q: %s takes one port or range", s, ProtoName(spec.Proto))
	}
	lo, hi, isRange := strings.Cut(rest, "-")
	l, err := parsePort(lo, s)
	if err != nil {
		return Spec{}, err
	}
	h := l
	if isRange {
		if h, err = parsePort(hi, s); err != nil {
			return Spec{}, err
		}
		if l > h {
			return Spec{}, fmt.Errorf("bad port range %q: low port above high port", rest)
		}
	}
	spec.Lo, spec.Hi = l, h
	return spec, nil
}

// parsePort parses one port number of the spec whole.
func parsePort(s, whole string) (uint16, error) {
	if s == "" {
		return 0, fmt.Errorf("bad port spec %q: missing port number", whole)
	}
	if !digits(s) {
		return 0, fmt.Errorf("bad port %q in %q: want a number 0-65535", s, whole)
	}
	n, ok := parseUint(s, 65535)
	if !ok {
		return 0, fmt.Errorf("port %s out of range", s)
	}
	return uint16(n), nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// parseUint accepts decimal digits only (no sign, no base prefix) up to max.
func parseUint(s string, max uint64) (uint64, bool) {
	if !digits(s) {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil && n <= max
}

// Matches reports whether a packet of proto to port (TCP, UDP, SCTP) or of
// ICMP type and code matches the spec. The port is ignored for ICMP and the
// type and code for everything else.
func (s Spec) Matches(proto uint8, port uint16, icmpType, icmpCode int16) bool {
	if s.Proto == 0 {
		return true
	}
	if proto != s.Proto {
		return false
	}
	switch {
	case HasPorts(proto):
		return s.Lo <= port && port <= s.Hi
	case IsICMP(proto):
		return (s.ICMPType == Any || s.ICMPType == icmpType) && (s.ICMPCode == Any || s.ICMPCode == icmpCode)
	}
	return true
}

// String returns the canonical form of the spec, which Parse maps back to
// the same Spec.
func (s Spec) String() string {
	name := ProtoName(s.Proto)
	switch {
	case s.Proto == 0:
		return name
	case HasPorts(s.Proto):
		if s.Lo == 0 && s.Hi == 65535 {
			return name
		}
		if s.Lo == s.Hi {
			return name + "/" + strconv.Itoa(int(s.Lo))
		}
		return name + "/" + strconv.Itoa(int(s.Lo)) + "-" + strconv.Itoa(int(s.Hi))
	case IsICMP(s.Proto):
		if s.ICMPType < 0 {
			return name
		}
		if s.ICMPCode < 0 {
			return name + "/" + strconv.Itoa(int(s.ICMPType))
		}
		return name + "/" + strconv.Itoa(int(s.ICMPType)) + "/" + strconv.Itoa(int(s.ICMPCode))
	}
	return name
}
