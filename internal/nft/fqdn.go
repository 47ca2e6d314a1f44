package nft

import (
	"fmt"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// FQDN entries in the kernel.
//
// An FQDN entry matches when its peer, protocol and port match and the
// destination address is in its FQDN set, whose elements the agent's DNS
// snooper writes (with timeouts) as workloads resolve names. The policy
// maps cannot test a set, so the resolver treats an FQDN entry as a
// condition: for each region of (peer, protocol, port) where FQDN entries
// come before the first plain entry that covers it (the region's first
// match without names), the map value is a dispatch, not a verdict. A
// dispatch is the ordered list of (FQDN set, verdict) tests of that region
// and its fallback: the first plain entry's verdict, or none when no plain
// entry of this lookup covers the region (then the walk goes on to the
// AnyPeer lookup, or the default, as for a miss). Regions with equal test
// lists share one dispatch, numbered in bits 0-23 of the value, with bit 31
// (markDispatch) set.
//
// The egress chain of a state with dispatches finishes a lookup only when
// its value has no dispatch bit; otherwise the following rules, one per
// test, compare the ct mark with the dispatch and the destination address
// with the set, and set the test's verdict; a last rule sets the
// fallback. So an earlier plain entry always wins (the region's value is
// its verdict), and an FQDN entry wins exactly where it is the first match
// of the evaluator's walk for a destination whose name it matches.
//
// The sets themselves are declared with the table (ipv4_addr and
// ipv6_addr, flags timeout), not per version: the snooper fills one set for
// both versions. A full apply that recreates the table (a change of the
// FQDN sets or of the dispatches needs one) empties them; the agent then
// writes them again from its cache (dnssnoop.Sets.Sync).
//
// The Go side of the walk (Decider, used by the L7 queue reader) does not
// know the sets: it treats FQDN entries as not matching.

// dispatchAct is the internal action of a box whose value is a dispatch:
// the box's Rule field holds the dispatch number.
const dispatchAct Action = 4

// cond is one test of a dispatch: the FQDN set (1-based) and the mark it
// sets when the destination is in the set.
type cond struct {
	set  int
	mark Mark
}

// dispatch is the FQDN tests of one region and what decides when none
// succeeds.
type dispatch struct {
	conds    []cond
	fallback Mark
	hasFall  bool
}

// dispatchFunc registers the tests of a region (entries' sets and
// verdicts, then the fallback verdict, nil for none) and returns the
// dispatch's number.
type dispatchFunc func(conds []Entry, fallback *Verdict) uint32

// dispatches numbers the distinct dispatches of one compile in order of
// first use, so that equal states compile to equal kernel values.
type dispatches struct {
	list  []dispatch
	keys  []string
	byKey map[string]uint32
}

func (d *dispatches) register(ingress bool) dispatchFunc {
	return func(conds []Entry, fallback *Verdict) uint32 {
		mark := func(v Verdict) Mark {
			if v.Action == pending {
				return MakePendingMark(v, ingress)
			}
			return MakeMark(v, ingress)
		}
		var dp dispatch
		var key strings.Builder
		for _, e := range conds {
			c := cond{set: e.FQDN, mark: mark(e.Verdict)}
			dp.conds = append(dp.conds, c)
			fmt.Fprintf(&key, "%d:%x,", c.set, uint32(c.mark))
		}
		if fallback != nil {
			dp.fallback, dp.hasFall = mark(*fallback), true
			fmt.Fprintf(&key, "=%x", uint32(dp.fallback))
		}
		k := key.String()
		if n, ok := d.byKey[k]; ok {
			return n
		}
		if d.byKey == nil {
			d.byKey = map[string]uint32{}
		}
		d.list = append(d.list, dp)
		d.keys = append(d.keys, k)
		n := uint32(len(d.list))
		d.byKey[k] = n
		return n
	}
}

// sameFQDN reports whether two compiles have the same FQDN sets and
// dispatches, so that one's chains serve the other.
func sameFQDN(a, b *compiled) bool {
	if a.fqdnSets != b.fqdnSets || len(a.dispatch.keys) != len(b.dispatch.keys) || string(a.fqdnFamily) != string(b.fqdnFamily) {
		return false
	}
	for i := range a.dispatch.keys {
		if a.dispatch.keys[i] != b.dispatch.keys[i] {
			return false
		}
	}
	return true
}

func hasFQDNEntry(entries []Entry) bool {
	for _, e := range entries {
		if e.FQDN != 0 {
			return true
		}
	}
	return false
}

// resolvePeerCond is resolvePeer for a list with FQDN entries: each
// protocol the list names is swept on its own (with the any-protocol
// entries, in order), and the protocols between them get what the
// any-protocol entries give.
func resolvePeerCond(out []box, peer Identity, entries []Entry, idx []int, reg dispatchFunc) []box {
	var protos []int
	seen := [256]bool{}
	var anyList []Entry
	for _, i := range idx {
		e := entries[i]
		if e.Proto == ProtoAny {
			e.Ports = AllPorts
			anyList = append(anyList, e)
			continue
		}
		if !seen[e.Proto] {
			seen[e.Proto] = true
			protos = append(protos, int(e.Proto))
		}
	}
	sort.Ints(protos)
	var anySeg []segment
	if len(anyList) > 0 {
		anySeg = sweepCond(anyList, reg)
	}
	gap := func(lo, hi int) {
		if lo <= hi && len(anySeg) > 0 {
			out = append(out, box{peer, uint8(lo), uint8(hi), 0, 0xffff, anySeg[0].v})
		}
	}
	next := 0
	for _, p := range protos {
		gap(next, p-1)
		var list []Entry
		for _, i := range idx {
			e := entries[i]
			if e.Proto == ProtoAny {
				e.Proto, e.Ports = uint8(p), AllPorts
				list = append(list, e)
			} else if int(e.Proto) == p {
				list = append(list, e)
			}
		}
		for _, s := range sweepCond(list, reg) {
			out = append(out, box{peer, uint8(p), uint8(p), s.lo, s.hi, s.v})
		}
		next = p + 1
	}
	gap(next, 255)
	return out
}

// sweepCond splits the port axis of one protocol among entries in priority
// order: at each point, the FQDN entries before the first plain entry
// covering it become a dispatch, the plain entry its fallback. It costs
// O(entries × cuts), which is fine for the lists FQDN rules make.
func sweepCond(list []Entry, reg dispatchFunc) []segment {
	cuts := make([]int, 0, 2*len(list))
	for _, e := range list {
		cuts = append(cuts, int(e.Ports.Lo), int(e.Ports.Hi)+1)
	}
	sort.Ints(cuts)
	var segs []segment
	var conds []Entry
	for ci, x := range cuts {
		if ci > 0 && x == cuts[ci-1] || x > 0xffff {
			continue
		}
		end := 0x10000
		for _, y := range cuts[ci+1:] {
			if y > x {
				end = y
				break
			}
		}
		conds = conds[:0]
		var fb *Verdict
		for i := range list {
			e := &list[i]
			if x < int(e.Ports.Lo) || x > int(e.Ports.Hi) {
				continue
			}
			if e.FQDN == 0 {
				fb = &e.Verdict
				break
			}
			conds = append(conds, *e)
		}
		// Trailing tests that decide as the fallback change nothing.
		for fb != nil && len(conds) > 0 && conds[len(conds)-1].Verdict == *fb {
			conds = conds[:len(conds)-1]
		}
		var v Verdict
		switch {
		case len(conds) > 0:
			v = Verdict{Rule: reg(conds, fb), Action: dispatchAct}
		case fb != nil:
			v = *fb
		default:
			continue
		}
		lo, hi := uint16(x), uint16(end-1)
		if n := len(segs); n > 0 && segs[n-1].v == v && int(segs[n-1].hi)+1 == x {
			segs[n-1].hi = hi
			continue
		}
		segs = append(segs, segment{lo, hi, v})
	}
	return segs
}

// fqdnSetID is the batch-local id of FQDN set i's kernel set.
func fqdnSetID(i int, v6 bool) uint32 {
	id := uint32(1000 + 2*i)
	if v6 {
		id++
	}
	return id
}

// FQDNSetSize bounds the elements of each FQDN kernel set.
const FQDNSetSize = 65536

// fqdnSetDefs returns the kernel sets of n FQDN sets, v4 then v6 of each.
func (t *Table) fqdnSetDefs(n int) []*nftables.Set {
	var out []*nftables.Set
	for i := 1; i <= n; i++ {
		out = append(out,
			&nftables.Set{Table: t.table(), ID: fqdnSetID(i, false), Name: FQDNSetName(i, false), KeyType: nftables.TypeIPAddr, HasTimeout: true, Size: FQDNSetSize},
			&nftables.Set{Table: t.table(), ID: fqdnSetID(i, true), Name: FQDNSetName(i, true), KeyType: nftables.TypeIP6Addr, HasTimeout: true, Size: FQDNSetSize},
		)
	}
	return out
}

// dispatchGuard ends a policy lookup's rule at the verdict chain unless the
// value just stored in the ct mark (register 1) is a dispatch.
func dispatchGuard() []expr.Any {
	return []expr.Any{
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg2, Len: 4, Mask: native32(uint32(markDispatch)), Xor: native32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg2, Data: native32(0)},
	}
}

// dispatchRules are the tests of every dispatch, then its fallback.
func (c *compiled) dispatchRules() []ruleSpec {
	var rs []ruleSpec
	setMark := func(m Mark) []expr.Any {
		return []expr.Any{
			&expr.Immediate{Register: reg1, Data: native32(uint32(m))},
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg1, SourceRegister: true},
			&expr.Verdict{Kind: expr.VerdictGoto, Chain: ChainVerdict},
		}
	}
	for k, d := range c.dispatch.list {
		is := func() []expr.Any {
			return []expr.Any{
				&expr.Ct{Key: expr.CtKeyMARK, Register: reg1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: native32(uint32(markDispatch) | uint32(k+1))},
			}
		}
		for _, cd := range d.conds {
			fam := c.fqdnFamily[cd.set-1]
			for _, v6 := range []bool{false, true} {
				if v6 && fam == 4 || !v6 && fam == 6 {
					continue
				}
				nfproto, off, size := byte(unix.NFPROTO_IPV4), uint32(16), uint32(4)
				if v6 {
					nfproto, off, size = unix.NFPROTO_IPV6, 24, 16
				}
				exprs := append(is(),
					&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{nfproto}},
					&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
					&expr.Lookup{SourceRegister: reg1, SetName: FQDNSetName(cd.set, v6), SetID: fqdnSetID(cd.set, v6)},
				)
				rs = append(rs, ruleSpec{exprs: append(exprs, setMark(cd.mark)...)})
			}
		}
		if d.hasFall {
			rs = append(rs, ruleSpec{exprs: append(is(), setMark(d.fallback)...)})
		}
	}
	return rs
}
