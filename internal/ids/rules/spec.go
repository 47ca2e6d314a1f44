package rules

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// resolver evaluates address and port specifications against variables.
// It remembers what it resolved: a rule file names the same few
// specifications thousands of times.
type resolver struct {
	vars      *Vars
	addrCache map[string]*AddrSet
	portCache map[string]*PortSet
	// visiting is the chain of variables being expanded, for cycles.
	visiting []string
}

func newResolver(v *Vars) *resolver {
	if v == nil {
		v = DefaultVars()
	}
	return &resolver{vars: v, addrCache: map[string]*AddrSet{}, portCache: map[string]*PortSet{}}
}

// addrSet resolves a header address field.
func (r *resolver) addrSet(spec string) (*AddrSet, error) {
	if s, ok := r.addrCache[spec]; ok {
		return s, nil
	}
	rs, err := r.addrRanges(spec)
	if err != nil {
		return nil, err
	}
	s, ok := rs.addrSet()
	if !ok {
		return nil, fmt.Errorf("address %q matches no address", spec)
	}
	r.addrCache[spec] = s
	return s, nil
}

// portSet resolves a header port field.
func (r *resolver) portSet(spec string) (*PortSet, error) {
	if s, ok := r.portCache[spec]; ok {
		return s, nil
	}
	rs, err := r.portRanges(spec)
	if err != nil {
		return nil, err
	}
	s, ok := rs.portSet()
	if !ok {
		return nil, fmt.Errorf("port %q matches no port", spec)
	}
	r.portCache[spec] = s
	return s, nil
}

// splitList splits the inside of a [...] list at its top-level commas.
func splitList(s string) ([]string, error) {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			depth++
		case ']':
			depth--
			if depth < 0 {
				return nil, fmt.Errorf("unbalanced ] in %q", s)
			}
		case ',':
			if depth == 0 {
				parts = append(parts, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("unbalanced [ in %q", s)
	}
	return append(parts, strings.TrimSpace(s[start:])), nil
}

// expand looks up a variable for a "$NAME" element, refusing cycles.
func (r *resolver) expand(elem string) (string, func(), error) {
	name := elem[1:]
	for _, v := range r.visiting {
		if v == name {
			return "", nil, fmt.Errorf("variable cycle $%s -> $%s", strings.Join(r.visiting, " -> $"), name)
		}
	}
	val, ok := r.vars.m[name]
	if !ok {
		return "", nil, fmt.Errorf("undefined variable $%s", name)
	}
	r.visiting = append(r.visiting, name)
	return val, func() { r.visiting = r.visiting[:len(r.visiting)-1] }, nil
}

// addrRanges evaluates one element of an address specification: a list
// is the union of its positive elements (everything when it has none)
// without its negated ones; "!x" on its own is everything but x.
func (r *resolver) addrRanges(spec string) (addrRanges, error) {
	spec = strings.TrimSpace(spec)
	switch {
	case spec == "":
		return addrRanges{}, fmt.Errorf("empty address")
	case spec == "any":
		return allAddrs(), nil
	case spec[0] == '!':
		x, err := r.addrRanges(spec[1:])
		if err != nil {
			return addrRanges{}, err
		}
		return x.complement(), nil
	case spec[0] == '$':
		val, done, err := r.expand(spec)
		if err != nil {
			return addrRanges{}, err
		}
		defer done()
		x, err := r.addrRanges(val)
		if err != nil {
			return addrRanges{}, fmt.Errorf("variable %s: %w", spec, err)
		}
		return x, nil
	case spec[0] == '[':
		if spec[len(spec)-1] != ']' {
			return addrRanges{}, fmt.Errorf("address list %q has no closing ]", spec)
		}
		parts, err := splitList(spec[1 : len(spec)-1])
		if err != nil {
			return addrRanges{}, err
		}
		// Gather the ranges, merge once: lists of hundreds of addresses
		// are common.
		var pos, neg addrRanges
		havePos := false
		for _, p := range parts {
			if p == "" {
				return addrRanges{}, fmt.Errorf("empty element in address list %q", spec)
			}
			to := &pos
			if p[0] == '!' {
				to, p = &neg, p[1:]
			} else {
				havePos = true
			}
			x, err := r.addrRanges(p)
			if err != nil {
				return addrRanges{}, err
			}
			to.v4 = append(to.v4, x.v4...)
			to.v6 = append(to.v6, x.v6...)
		}
		if !havePos {
			pos = allAddrs()
		}
		pos.v4, pos.v6 = mergeRanges(pos.v4), mergeRanges(pos.v6)
		neg.v4, neg.v6 = mergeRanges(neg.v4), mergeRanges(neg.v6)
		return pos.minus(neg), nil
	}
	var s addrRanges
	if strings.IndexByte(spec, '/') >= 0 {
		p, err := netip.ParsePrefix(spec)
		if err != nil {
			// Suricata also takes a dotted netmask: 10.0.0.0/255.0.0.0.
			p, err = parseMaskPrefix(spec)
			if err != nil {
				return addrRanges{}, fmt.Errorf("bad address %q: not an IP, CIDR, list or variable", spec)
			}
		}
		s.addPrefix(p)
		return s, nil
	}
	if i := strings.IndexByte(spec, '-'); i > 0 {
		// An address range a-b.
		lo, err1 := netip.ParseAddr(spec[:i])
		hi, err2 := netip.ParseAddr(spec[i+1:])
		if err1 != nil || err2 != nil || lo.Is4() != hi.Is4() || hi.Less(lo) {
			return addrRanges{}, fmt.Errorf("bad address range %q", spec)
		}
		rg := addrRange{fromAddr(lo), fromAddr(hi)}
		if lo.Is4() {
			s.v4 = append(s.v4, rg)
		} else {
			s.v6 = append(s.v6, rg)
		}
		return s, nil
	}
	a, err := netip.ParseAddr(spec)
	if err != nil {
		return addrRanges{}, fmt.Errorf("bad address %q: not an IP, CIDR, list or variable", spec)
	}
	a = a.Unmap()
	s.addPrefix(netip.PrefixFrom(a, a.BitLen()))
	return s, nil
}

func parseMaskPrefix(spec string) (netip.Prefix, error) {
	i := strings.IndexByte(spec, '/')
	a, err := netip.ParseAddr(spec[:i])
	if err != nil || !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("bad address")
	}
	m, err := netip.ParseAddr(spec[i+1:])
	if err != nil || !m.Is4() {
		return netip.Prefix{}, fmt.Errorf("bad mask")
	}
	v := uint32(fromAddr(m).lo)
	ones := 0
	for v&0x80000000 != 0 {
		ones++
		v <<= 1
	}
	if v != 0 {
		return netip.Prefix{}, fmt.Errorf("mask not contiguous")
	}
	return netip.PrefixFrom(a, ones), nil
}

// portRanges evaluates one element of a port specification, like
// addrRanges: N, N:M, N:, :M, lists, negation, variables.
func (r *resolver) portRanges(spec string) (portRanges, error) {
	spec = strings.TrimSpace(spec)
	switch {
	case spec == "":
		return nil, fmt.Errorf("empty port")
	case spec == "any":
		return portRanges{{0, 65535}}, nil
	case spec[0] == '!':
		x, err := r.portRanges(spec[1:])
		if err != nil {
			return nil, err
		}
		return x.complement(), nil
	case spec[0] == '$':
		val, done, err := r.expand(spec)
		if err != nil {
			return nil, err
		}
		defer done()
		x, err := r.portRanges(val)
		if err != nil {
			return nil, fmt.Errorf("variable %s: %w", spec, err)
		}
		return x, nil
	case spec[0] == '[':
		if spec[len(spec)-1] != ']' {
			return nil, fmt.Errorf("port list %q has no closing ]", spec)
		}
		parts, err := splitList(spec[1 : len(spec)-1])
		if err != nil {
			return nil, err
		}
		var pos, neg portRanges
		havePos := false
		for _, p := range parts {
			if p == "" {
				return nil, fmt.Errorf("empty element in port list %q", spec)
			}
			to := &pos
			if p[0] == '!' {
				to, p = &neg, p[1:]
			} else {
				havePos = true
			}
			x, err := r.portRanges(p)
			if err != nil {
				return nil, err
			}
			*to = append(*to, x...)
		}
		if !havePos {
			pos = portRanges{{0, 65535}}
		}
		return pos.merge().minus(neg.merge()), nil
	}
	if i := strings.IndexByte(spec, ':'); i >= 0 {
		lo, hi := 0, 65535
		var err error
		if i > 0 {
			if lo, err = parsePort(spec[:i]); err != nil {
				return nil, err
			}
		}
		if i < len(spec)-1 {
			if hi, err = parsePort(spec[i+1:]); err != nil {
				return nil, err
			}
		}
		if i == 0 && i == len(spec)-1 || lo > hi {
			return nil, fmt.Errorf("bad port range %q", spec)
		}
		return portRanges{{uint16(lo), uint16(hi)}}, nil
	}
	p, err := parsePort(spec)
	if err != nil {
		return nil, err
	}
	return portRanges{{uint16(p), uint16(p)}}, nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("bad port %q: not a number 0-65535, range, list or variable", s)
	}
	return n, nil
}
