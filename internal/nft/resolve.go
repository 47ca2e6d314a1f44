package nft

import (
	"container/heap"
	"slices"
	"sort"
)

// box is a region of (protocol, port) space for one peer identity that one
// verdict decides. Boxes of one peer are disjoint, and each is contiguous in
// the kernel key order: either one protocol and a port range, or a range of
// protocols with all ports.
type box struct {
	peer             Identity
	protoLo, protoHi uint8
	portLo, portHi   uint16
	v                Verdict
}

// resolve turns an ordered, possibly overlapping, first-match-wins entry list
// into disjoint boxes with the same meaning: a (peer, proto, port) point is in
// a box with verdict v exactly when the first entry matching it has verdict v,
// and in no box when no entry matches. Adjacent pieces with equal verdicts
// are merged. Boxes come out sorted in kernel key order (peer, proto, port).
// It costs O(n log n) in the number of entries.
//
// AnyPeer entries are resolved on their own (the kernel's second lookup) and
// also merged into the list of every peer that has entries of its own, as far
// as that peer's last entry: a hit on the peer's own boxes is then the true
// first match, and a miss means that only a later AnyPeer entry can match.
func resolve(entries []Entry) []box { return resolveWith(entries, nil) }

// resolveWith is resolve for lists that may hold FQDN entries: a peer whose
// list has one is resolved by resolvePeerCond, which registers the FQDN
// tests of each region with reg.
func resolveWith(entries []Entry, reg dispatchFunc) []box {
	byPeer := map[Identity][]int{}
	var peers []Identity
	var anyIdx []int
	for i, e := range entries {
		if e.Peer == AnyPeer {
			anyIdx = append(anyIdx, i)
			continue
		}
		if _, ok := byPeer[e.Peer]; !ok {
			peers = append(peers, e.Peer)
		}
		byPeer[e.Peer] = append(byPeer[e.Peer], i)
	}
	if len(anyIdx) > 0 {
		for _, p := range peers {
			own := byPeer[p]
			last := own[len(own)-1]
			n := sort.SearchInts(anyIdx, last) // AnyPeer entries before last
			if n > 0 {
				byPeer[p] = mergeSorted(own, anyIdx[:n])
			}
		}
		peers = append(peers, AnyPeer)
		byPeer[AnyPeer] = anyIdx
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i] < peers[j] })
	var out []box
	for _, p := range peers {
		if reg != nil && slices.ContainsFunc(byPeer[p], func(i int) bool { return entries[i].FQDN != 0 }) {
			out = resolvePeerCond(out, p, entries, byPeer[p], reg)
			continue
		}
		out = resolvePeer(out, p, entries, byPeer[p])
	}
	return out
}

func mergeSorted(a, b []int) []int {
	out := make([]int, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if a[i] < b[j] {
			out = append(out, a[i])
			i++
		} else {
			out = append(out, b[j])
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// protoRun is a run of protocols with how the port axis is split among
// verdicts; full runs (one segment over all ports) may span protocols.
type protoRun struct {
	lo, hi uint8
	segs   []segment
}

type segment struct {
	lo, hi uint16
	v      Verdict
}

func (r protoRun) fullWith() (Verdict, bool) {
	if len(r.segs) == 1 && r.segs[0].lo == 0 && r.segs[0].hi == 0xffff {
		return r.segs[0].v, true
	}
	return Verdict{}, false
}

func resolvePeer(out []box, peer Identity, entries []Entry, idx []int) []box {
	// Everything after the first any-protocol entry is shadowed.
	var anyV *Verdict
	byProto := map[uint8][]Entry{}
	var protos []uint8
	for _, i := range idx {
		e := entries[i]
		if e.Proto == ProtoAny {
			v := e.Verdict
			anyV = &v
			break
		}
		if _, ok := byProto[e.Proto]; !ok {
			protos = append(protos, e.Proto)
		}
		byProto[e.Proto] = append(byProto[e.Proto], e)
	}
	sort.Slice(protos, func(i, j int) bool { return protos[i] < protos[j] })

	var runs []protoRun
	anyRun := func(lo, hi int) {
		if anyV != nil && lo <= hi {
			runs = append(runs, protoRun{uint8(lo), uint8(hi), []segment{{0, 0xffff, *anyV}}})
		}
	}
	next := 0
	for _, p := range protos {
		anyRun(next, int(p)-1)
		list := byProto[p]
		if anyV != nil {
			list = append(list, Entry{Proto: p, Ports: AllPorts, Verdict: *anyV})
		}
		runs = append(runs, protoRun{p, p, sweep(list)})
		next = int(p) + 1
	}
	anyRun(next, 255)

	// Merge neighbouring full runs with one verdict into protocol ranges.
	var merged []protoRun
	for _, r := range runs {
		if n := len(merged); n > 0 {
			last := &merged[n-1]
			lv, lok := last.fullWith()
			rv, rok := r.fullWith()
			if lok && rok && lv == rv && int(last.hi)+1 == int(r.lo) {
				last.hi = r.hi
				continue
			}
		}
		merged = append(merged, r)
	}
	for _, r := range merged {
		if v, ok := r.fullWith(); ok {
			out = append(out, box{peer, r.lo, r.hi, 0, 0xffff, v})
			continue
		}
		for _, s := range r.segs { // r.lo == r.hi here
			out = append(out, box{peer, r.lo, r.hi, s.lo, s.hi, s.v})
		}
	}
	return out
}

// sweep splits the port axis of one protocol among entries listed in
// priority order: each point goes to the first entry covering it. Segments
// come out sorted, adjacent ones with equal verdicts merged; uncovered
// points are left out.
func sweep(list []Entry) []segment {
	if len(list) == 1 {
		return []segment{{list[0].Ports.Lo, list[0].Ports.Hi, list[0].Verdict}}
	}
	type ev struct {
		lo, hi int
		prio   int
	}
	evs := make([]ev, len(list))
	cuts := make([]int, 0, 2*len(list))
	for i, e := range list {
		evs[i] = ev{int(e.Ports.Lo), int(e.Ports.Hi), i}
		cuts = append(cuts, int(e.Ports.Lo), int(e.Ports.Hi)+1)
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].lo < evs[j].lo })
	sort.Ints(cuts)
	var segs []segment
	h := &prioHeap{}
	k := 0
	for ci := 0; ci < len(cuts); ci++ {
		x := cuts[ci]
		if ci > 0 && x == cuts[ci-1] || x > 0xffff {
			continue
		}
		end := 0x10000
		for cj := ci + 1; cj < len(cuts); cj++ {
			if cuts[cj] > x {
				end = cuts[cj]
				break
			}
		}
		for k < len(evs) && evs[k].lo <= x {
			heap.Push(h, prioItem{evs[k].prio, evs[k].hi})
			k++
		}
		for h.Len() > 0 && (*h)[0].hi < x {
			heap.Pop(h)
		}
		if h.Len() == 0 {
			continue
		}
		v := list[(*h)[0].prio].Verdict
		lo, hi := uint16(x), uint16(end-1)
		if n := len(segs); n > 0 && segs[n-1].v == v && int(segs[n-1].hi)+1 == x {
			segs[n-1].hi = hi
			continue
		}
		segs = append(segs, segment{lo, hi, v})
	}
	return segs
}

type prioItem struct{ prio, hi int }

// prioHeap is a min-heap on priority (entry order): the active entry with
// the lowest index wins.
type prioHeap []prioItem

func (h prioHeap) Len() int           { return len(h) }
func (h prioHeap) Less(i, j int) bool { return h[i].prio < h[j].prio }
func (h prioHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *prioHeap) Push(x any)        { *h = append(*h, x.(prioItem)) }
func (h *prioHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
