package nft

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sort"
)

// Names of the objects in the table.
const (
	SetWorkloads = "workloads"
	SetICMP      = "icmp"
	MapIdent4    = "ident4"
	MapIdent6    = "ident6"
	MapEgress    = "egress"
	MapIngress   = "ingress"

	ChainForward = "forward"
	ChainEgress  = "egress"
	ChainIngress = "ingress"
	ChainVerdict = "verdict"
	ChainDrop    = "drop"
	ChainReject  = "reject"
	ChainL7      = "l7"
	ChainL7Done  = "l7done"

	// SetBare4 and SetBare6 hold the header sizes of TCP packets without
	// payload (see bareKeys).
	SetBare4 = "l7bare4"
	SetBare6 = "l7bare6"
)

// keyLen is the size of an egress/ingress key: ifname(16) . identity(4) .
// l4proto(1, padded to 4) . port or ICMP type/code (2, padded to 4).
const keyLen = 28

// elem is one kernel set element. Interval maps hold a start element per
// interval (with data) and an end element (exclusive end, no data) unless
// the interval reaches the top of the key space.
type elem struct {
	key []byte
	end bool
	val []byte
}

// interval groups the start and (optional) end element of one interval;
// diffs work on whole intervals so that no intermediate kernel state has a
// dangling start or end.
type interval struct {
	start elem
	stop  *elem
}

// compiled is a HostState in kernel form: the content of every set. The
// chains depend only on Config, the revision and the defaults (rules.go).
type compiled struct {
	revision   uint64
	l7FailOpen bool
	egressDef  Mark
	ingressDef Mark
	workloads  [][]byte // ifname keys, sorted
	ident4     []interval
	ident6     []interval
	identities []IdentityRange // the input, to reuse ident4/6 when unchanged
	ifaces     []string        // sorted
	points     map[pointKey]*point
	// fqdnSets is how many FQDN sets the table declares; dispatch holds
	// the FQDN tests the policy maps' values refer to (fqdn.go).
	fqdnSets   int
	fqdnFamily []uint8 // per FQDN set
	dispatch   dispatches
	// sessions are the state's session ranges, sorted (session.go).
	sessions []SessionRange
}

// pointKey names one enforcement point: a workload interface, one direction.
type pointKey struct {
	iface   string
	ingress bool
}

// point is the compiled decision list of one enforcement point, with the
// input it came from: a later compile whose input is equal reuses it, so
// that a small change to a large policy costs little to compile and diff.
type point struct {
	entries []Entry
	ivs     []interval
}

// policy returns the egress or ingress map's intervals in key order.
func (c *compiled) policy(ingress bool) []interval {
	var out []interval
	for _, ifc := range c.ifaces {
		if p := c.points[pointKey{ifc, ingress}]; p != nil {
			out = append(out, p.ivs...)
		}
	}
	return out
}

// elements returns the set's elements in insertion order.
func (c *compiled) elements(set string) []elem {
	switch set {
	case SetICMP:
		return []elem{{key: []byte{ProtoICMP}}, {key: []byte{ProtoICMPv6}}}
	case SetBare4:
		return bareKeys(true)
	case SetBare6:
		return bareKeys(false)
	case SetWorkloads:
		out := make([]elem, len(c.workloads))
		for i, k := range c.workloads {
			out[i] = elem{key: k}
		}
		return out
	case MapIdent4:
		return flatten(c.ident4)
	case MapIdent6:
		return flatten(c.ident6)
	case MapEgress:
		return flatten(c.policy(false))
	case MapIngress:
		return flatten(c.policy(true))
	}
	return nil
}

func flatten(ivs []interval) []elem {
	out := make([]elem, 0, 2*len(ivs))
	for _, iv := range ivs {
		out = append(out, iv.start)
		if iv.stop != nil {
			out = append(out, *iv.stop)
		}
	}
	return out
}

func countElems(ivs []interval) int {
	n := 0
	for _, iv := range ivs {
		n++
		if iv.stop != nil {
			n++
		}
	}
	return n
}

// compile validates st and computes every set's content. Parts whose input
// equals prev's (which may be nil) are taken from prev as they are.
func compile(st *HostState, prev *compiled) (*compiled, error) {
	v4, v6, err := st.validate()
	if err != nil {
		return nil, err
	}
	c := &compiled{
		revision:   st.Revision,
		l7FailOpen: st.L7FailOpen,
		egressDef:  MakeMark(st.EgressDefault, false),
		ingressDef: MakeMark(st.IngressDefault, true),
		points:     make(map[pointKey]*point, 2*len(st.Workloads)),
		fqdnSets:   len(st.FQDNSets),
	}
	for _, f := range st.FQDNSets {
		c.fqdnFamily = append(c.fqdnFamily, f.Family)
	}
	if len(st.Sessions) > 0 {
		c.sessions = slices.Clone(st.Sessions)
		slices.SortFunc(c.sessions, compareSession)
	}
	for i := range st.Workloads {
		w := &st.Workloads[i]
		c.ifaces = append(c.ifaces, w.Interface)
		for _, ingress := range []bool{false, true} {
			entries := w.Egress
			if ingress {
				entries = w.Ingress
			}
			k := pointKey{w.Interface, ingress}
			if hasFQDNEntry(entries) {
				// Never reused: its dispatches are numbered in this compile.
				c.points[k] = &point{
					entries: slices.Clone(entries),
					ivs:     appendBoxes(nil, w.Interface, resolveWith(kernelEntries(entries), c.dispatch.register(ingress)), ingress),
				}
				continue
			}
			if prev != nil {
				if p := prev.points[k]; p != nil && slices.Equal(p.entries, entries) {
					c.points[k] = p
					continue
				}
			}
			c.points[k] = &point{
				entries: slices.Clone(entries),
				ivs:     appendBoxes(nil, w.Interface, resolve(kernelEntries(entries)), ingress),
			}
		}
	}
	sort.Strings(c.ifaces)
	for _, ifc := range c.ifaces {
		c.workloads = append(c.workloads, ifnameKey(ifc))
	}
	if prev != nil && slices.Equal(prev.identities, st.Identities) {
		c.ident4, c.ident6, c.identities = prev.ident4, prev.ident6, prev.identities
	} else {
		c.ident4, c.ident6 = identIntervals(v4), identIntervals(v6)
		c.identities = slices.Clone(st.Identities)
	}
	return c, nil
}

// pending is the action of an L7 entry in the kernel: none yet. Boxes with
// it become pending marks (MakePendingMark).
const pending Action = 0

// kernelEntries returns entries with each L7 entry's action replaced by
// pending, so that the resolver never merges an L7 entry with an entry that
// decides at L3/L4.
func kernelEntries(entries []Entry) []Entry {
	out := entries
	for i, e := range entries {
		if e.Profile == 0 {
			continue
		}
		if &out[0] == &entries[0] {
			out = slices.Clone(entries)
		}
		out[i].Verdict.Action = pending
	}
	return out
}

func ifnameKey(name string) []byte {
	k := make([]byte, 16)
	copy(k, name)
	return k
}

// policyKey lays out the registers the lookup rule fills:
// ifname . identity . l4proto . port, each padded to 4 bytes. The identity
// is big endian because it is the raw data of the identity maps, copied
// through the ct mark; the port is in network order as nft loads it.
func policyKey(ifname string, peer Identity, proto uint8, port uint16) []byte {
	k := make([]byte, keyLen)
	copy(k, ifname)
	binary.BigEndian.PutUint32(k[16:], uint32(peer))
	k[20] = proto
	binary.BigEndian.PutUint16(k[24:], port)
	return k
}

// next returns the key right after k (k+1 as a big-endian number): the
// exclusive end of an interval whose last key is k. ok is false at the top
// of the key space.
func next(k []byte) (out []byte, ok bool) {
	out = bytes.Clone(k)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			return out, true
		}
	}
	return nil, false
}

// markData is a verdict as map data: big endian, turned into the host order
// of the ct mark by a byteorder expression after the lookup, so that
// `nft list` (which assumes big endian for maps made without nft's own
// userdata) prints the real mark.
func markData(m Mark) []byte {
	return binary.BigEndian.AppendUint32(nil, uint32(m))
}

func appendBoxes(out []interval, ifname string, boxes []box, ingress bool) []interval {
	for _, b := range boxes {
		start := policyKey(ifname, b.peer, b.protoLo, b.portLo)
		last := policyKey(ifname, b.peer, b.protoHi, b.portHi)
		stop, _ := next(last) // the padding bytes keep this from overflowing
		m := MakeMark(b.v, ingress)
		switch b.v.Action {
		case pending:
			m = MakePendingMark(b.v, ingress)
		case dispatchAct:
			m = markDispatch | Mark(b.v.Rule)
		}
		out = append(out, interval{
			start: elem{key: start, val: markData(m)},
			stop:  &elem{key: stop, end: true},
		})
	}
	return out
}

// identIntervals turns sorted, disjoint ranges of one family into map
// intervals. Keys and data share one allocation: a large identity map is
// rebuilt on every membership change.
func identIntervals(rs []IdentityRange) []interval {
	if len(rs) == 0 {
		return nil
	}
	size := rs[0].Lo.BitLen() / 8
	// Exact capacity: appends never move buf or stops, so the slices and
	// pointers taken into them stay valid.
	buf := make([]byte, 0, len(rs)*(2*size+4))
	stops := make([]elem, 0, len(rs))
	out := make([]interval, len(rs))
	for i, r := range rs {
		n := len(buf)
		buf = appendAddr(buf, r.Lo)
		buf = binary.BigEndian.AppendUint32(buf, uint32(r.Identity))
		out[i] = interval{start: elem{key: buf[n : n+size], val: buf[n+size : n+size+4]}}
		if hi := r.Hi.Next(); hi.IsValid() { // else the range reaches the top
			m := len(buf)
			buf = appendAddr(buf, hi)
			stops = append(stops, elem{key: buf[m : m+size], end: true})
			out[i].stop = &stops[len(stops)-1]
		}
	}
	return out
}

func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		x := a.As4()
		return append(b, x[:]...)
	}
	x := a.As16()
	return append(b, x[:]...)
}

// Counts is how many kernel elements each set holds (interval maps count
// start and end elements, as the kernel lists them).
type Counts map[string]int

func (c *compiled) counts() Counts {
	return Counts{
		SetWorkloads: len(c.workloads),
		SetICMP:      2,
		SetBare4:     len(bareKeys(true)),
		SetBare6:     len(bareKeys(false)),
		MapIdent4:    countElems(c.ident4),
		MapIdent6:    countElems(c.ident6),
		MapEgress:    c.countPolicy(false),
		MapIngress:   c.countPolicy(true),
	}
}

func (c *compiled) countPolicy(ingress bool) int {
	n := 0
	for k, p := range c.points {
		if k.ingress == ingress {
			n += countElems(p.ivs)
		}
	}
	return n
}

var setNames = []string{SetWorkloads, SetICMP, SetBare4, SetBare6, MapIdent4, MapIdent6, MapEgress, MapIngress}

// Key sizes of the bare sets: each field padded to a 4-byte register.
const (
	bare4Len = 12 // IPv4 byte 0 (version, IHL) . TCP byte 12 & 0xf0 (data offset) . total length
	bare6Len = 8  // TCP byte 12 & 0xf0 . IPv6 payload length
)

// bareKeys lists every header shape of a TCP packet that carries no
// payload: IPv4 total length = 4*IHL + 4*doff; IPv6 payload length =
// 4*doff (no extension headers; a packet with some is queued, and the
// reader finds its payload empty). A pure ACK of a pending connection is
// then accepted in the kernel, and only packets with payload are queued.
func bareKeys(v4 bool) []elem {
	var out []elem
	for doff := 5; doff <= 15; doff++ {
		if !v4 {
			k := make([]byte, bare6Len)
			k[0] = byte(doff << 4)
			binary.BigEndian.PutUint16(k[4:], uint16(4*doff))
			out = append(out, elem{key: k})
			continue
		}
		for ihl := 5; ihl <= 15; ihl++ {
			k := make([]byte, bare4Len)
			k[0] = byte(0x40 | ihl)
			k[4] = byte(doff << 4)
			binary.BigEndian.PutUint16(k[8:], uint16(4*ihl+4*doff))
			out = append(out, elem{key: k})
		}
	}
	return out
}

// decodePolicyKey is the inverse of policyKey, for Describe and tests.
func decodePolicyKey(k []byte) (ifname string, peer Identity, proto uint8, port uint16, err error) {
	if len(k) != keyLen {
		return "", 0, 0, 0, fmt.Errorf("key of %d bytes, want %d", len(k), keyLen)
	}
	ifname = string(bytes.TrimRight(k[:16], "\x00"))
	return ifname, Identity(binary.BigEndian.Uint32(k[16:])), k[20], binary.BigEndian.Uint16(k[24:]), nil
}

// addrFromKey turns an identity map key back into an address.
func addrFromKey(k []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(k)
	return a
}
