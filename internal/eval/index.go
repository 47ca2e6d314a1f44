package eval

import (
	"github.com/bulkhead/bulkhead/internal/ports"
)

const (
	dirIn  uint8 = 1
	dirOut uint8 = 2
)

// sideIndex lists, for one side of a rule (sources or destinations) and
// each group, the rules that name the group on that side, in rule order.
// Rules whose other side is any are listed apart: they are candidates
// whenever this side matches. Rules that name groups on both sides are
// candidates through either side, and the walk takes the cheaper one.
type sideIndex struct {
	only [][]entry
	both [][]entry
	// bothRefs is, per identity, how many entries the identity's groups
	// have in both: the cost of walking this side.
	bothRefs []uint32
}

// entry is a rule in an index list, with a signature of the ports its
// services match: one bit per (protocol, single port) spec, all bits when a
// spec is wider. A flow whose own bit is clear cannot match the rule, so
// most candidates are dropped without touching the rule.
type entry struct {
	rule  int32
	ports uint32
}

// portBit is the signature bit of a flow, or of a single-port spec.
func portBit(proto uint8, port uint16) uint32 {
	h := uint32(proto)*0x9e3779b1 ^ uint32(port)*0x85ebca6b
	return 1 << (h >> 27)
}

// portSignature is the signature of a rule's services.
func portSignature(specs []ports.Spec, noService bool) uint32 {
	if noService {
		return 0
	}
	if len(specs) == 0 {
		return ^uint32(0)
	}
	var sig uint32
	for _, s := range specs {
		if !ports.HasPorts(s.Proto) || s.Lo != s.Hi {
			return ^uint32(0)
		}
		sig |= portBit(s.Proto, s.Lo)
	}
	return sig
}

// rule is the part of a compiled rule the walk reads, packed in 32 bytes
// so that visiting rules scattered over a large policy touches few cache
// lines. A count of 0 means any (sources, destinations, services) or none
// (profiles).
type rule struct {
	section                         int32
	srcOff, dstOff, svcOff, profOff uint32
	srcN, dstN, svcN, profN         uint16
	dir                             uint8
	staged                          bool
	noService                       bool // its Services hold no port spec
}

func (e *Evaluator) srcOf(r *rule) []int32 { return e.groupRefs[r.srcOff : r.srcOff+uint32(r.srcN)] }
func (e *Evaluator) dstOf(r *rule) []int32 { return e.groupRefs[r.dstOff : r.dstOff+uint32(r.dstN)] }

// index builds the per-group rule lists, sized exactly in a first pass.
func (c *compiler) index() {
	e := c.e
	ngroups := len(e.groupNames)
	// Each rule goes to the lists of one class per side.
	lists := func(r *rule) (src, dst *sideIndex, srcBoth, dstBoth bool) {
		switch {
		case r.srcN == 0 && r.dstN == 0:
			return nil, nil, false, false
		case r.dstN == 0:
			return &e.src, nil, false, false
		case r.srcN == 0:
			return nil, &e.dst, false, false
		}
		return &e.src, &e.dst, true, true
	}
	type counts struct{ only, both []int }
	cnt := map[*sideIndex]*counts{
		&e.src: {make([]int, ngroups), make([]int, ngroups)},
		&e.dst: {make([]int, ngroups), make([]int, ngroups)},
	}
	bump := func(side *sideIndex, both bool, gs []int32) {
		if side == nil {
			return
		}
		k := cnt[side].only
		if both {
			k = cnt[side].both
		}
		for _, g := range gs {
			k[g]++
		}
	}
	nany := 0
	for i := range e.rules {
		r := &e.rules[i]
		src, dst, sb, db := lists(r)
		if src == nil && dst == nil {
			nany++
		}
		bump(src, sb, e.srcOf(r))
		bump(dst, db, e.dstOf(r))
	}
	carve := func(k []int) [][]entry {
		total := 0
		for _, n := range k {
			total += n
		}
		flat := make([]entry, total)
		out := make([][]entry, len(k))
		off := 0
		for g, n := range k {
			out[g] = flat[off : off : off+n]
			off += n
		}
		return out
	}
	for side, k := range cnt {
		side.only, side.both = carve(k.only), carve(k.both)
	}
	e.anyAny = make([]entry, 0, nany)
	for i := range e.rules {
		r := &e.rules[i]
		x := entry{rule: int32(i), ports: portSignature(e.specs[r.svcOff:r.svcOff+uint32(r.svcN)], r.noService)}
		src, dst, sb, db := lists(r)
		if src == nil && dst == nil {
			e.anyAny = append(e.anyAny, x)
		}
		if src != nil {
			l := src.only
			if sb {
				l = src.both
			}
			for _, g := range e.srcOf(r) {
				l[g] = append(l[g], x)
			}
		}
		if dst != nil {
			l := dst.only
			if db {
				l = dst.both
			}
			for _, g := range e.dstOf(r) {
				l[g] = append(l[g], x)
			}
		}
	}
}
