package nft

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// Config says where and how to install the table. The zero value of every
// field means its default; call Validate (New does) before use.
type Config struct {
	// Table is the name of the inet table. Default "bulkhead".
	Table string
	// Priority of the forward hook. Default 0 (filter).
	Priority int32
	// LogGroup is the NFLOG group drops and rejects go to. Default 100.
	LogGroup uint16
	// LogRate is how many dropped/rejected packets per second reach NFLOG
	// at most (one token bucket for the whole host). Default 100.
	LogRate uint32
	// LogBurst is the bucket size. Default 2×LogRate.
	LogBurst uint32
	// L7Queue is the NFQUEUE number the payload packets of connections
	// waiting for an L7 decision go to (the agent's queue reader). Default
	// 7.
	L7Queue uint16
	// L7Queues is how many consecutive queues from L7Queue the kernel
	// spreads those packets over, by the CPU that queues them (CPU
	// fanout); the reader reads each on its own thread. Default 1.
	L7Queues uint16
	// IDSQueue is the first NFQUEUE number packets of interfaces the IDS
	// inspects inline ("prevent") go to; IDSQueues how many consecutive
	// queues the kernel balances them over by flow hash (both directions
	// of a connection in one queue). Defaults DefaultIDSQueue (128) and 1. See ids_chain.go.
	IDSQueue  uint16
	IDSQueues uint16
	// IDSLogGroup is the NFLOG group copies of the packets of interfaces
	// inspected in "detect" mode go to. Default 102.
	IDSLogGroup uint16
	// IDSFailClosed drops inline-inspected packets while no IDS reader
	// is bound; by default they pass (fail-open).
	IDSFailClosed bool
	// NetNS is a descriptor of the network namespace to work in; 0 means
	// the caller's.
	NetNS int
}

// Defaults.
const (
	DefaultTable    = "bulkhead"
	DefaultLogGroup = 100
	DefaultLogRate  = 100
	DefaultL7Queue  = 7
)

// NFLOG prefixes of dropped and rejected packets.
const (
	LogPrefixDrop   = "bulkhead drop "
	LogPrefixReject = "bulkhead reject "
)

func (c Config) withDefaults() Config {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.LogGroup == 0 {
		c.LogGroup = DefaultLogGroup
	}
	if c.LogRate == 0 {
		c.LogRate = DefaultLogRate
	}
	if c.L7Queue == 0 {
		c.L7Queue = DefaultL7Queue
	}
	if c.L7Queues == 0 {
		c.L7Queues = 1
	}
	if c.IDSQueue == 0 {
		c.IDSQueue = DefaultIDSQueue
	}
	if c.IDSQueues == 0 {
		c.IDSQueues = 1
	}
	if c.IDSLogGroup == 0 {
		c.IDSLogGroup = DefaultIDSLogGroup
	}
	if c.LogBurst == 0 {
		c.LogBurst = 2 * c.LogRate
	}
	return c
}

// Validate checks the configuration after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	if len(c.Table) > 255 || strings.ContainsRune(c.Table, 0) {
		return fmt.Errorf("nft: config: table %q: invalid name", c.Table)
	}
	if c.NetNS < 0 {
		return fmt.Errorf("nft: config: netns fd %d: invalid", c.NetNS)
	}
	if int(c.L7Queue)+int(c.L7Queues)-1 > 65535 {
		return fmt.Errorf("nft: config: L7 queues %d-%d: beyond queue 65535", c.L7Queue, int(c.L7Queue)+int(c.L7Queues)-1)
	}
	if int(c.IDSQueue)+int(c.IDSQueues)-1 > 65535 {
		return fmt.Errorf("nft: config: IDS queues %d-%d: beyond queue 65535", c.IDSQueue, int(c.IDSQueue)+int(c.IDSQueues)-1)
	}
	if int(c.IDSQueue) < int(c.L7Queue)+int(c.L7Queues) && int(c.L7Queue) < int(c.IDSQueue)+int(c.IDSQueues) {
		return fmt.Errorf("nft: config: IDS queues %d-%d overlap the L7 queues %d-%d", c.IDSQueue, int(c.IDSQueue)+int(c.IDSQueues)-1, c.L7Queue, int(c.L7Queue)+int(c.L7Queues)-1)
	}
	return nil
}

// Registers: nft's 16-byte register 1, and the 4-byte registers 0-15
// (NFT_REG32_00 = 8) where the 28-byte lookup key is assembled.
const (
	reg1     = 1
	reg32    = 8
	regKey   = reg32 + 0 // ifname: 4 registers
	regPeer  = reg32 + 4
	regProto = reg32 + 5
	regPort  = reg32 + 6
	reg2     = 2 // a second 16-byte register (32-bit registers 4-7)
)

// conntrack state bits, as `ct state` loads them (host order).
const (
	ctInvalid     = 1
	ctEstablished = 2
	ctRelated     = 4
	ctUntracked   = 64
)

// NFQUEUE target flags (struct xt_NFQ_info_v3).
const (
	nfqBypass    = 0x1 // no reader bound: accept instead of drop
	nfqCPUFanout = 0x2 // queue by the CPU: queue + cpu % total
)

// nfqueueInfo is struct xt_NFQ_info_v3 in host order: queue number, number
// of queues (1), flags. This kernel has no nft queue expression, but the
// xtables target through nft compat works.
func nfqueueInfo(queue, total uint16, bypass bool) []byte {
	var flags uint16
	if bypass {
		flags |= nfqBypass
	}
	if total > 1 {
		flags |= nfqCPUFanout
	}
	b := binary.NativeEndian.AppendUint16(nil, queue)
	b = binary.NativeEndian.AppendUint16(b, max(total, 1))
	return binary.NativeEndian.AppendUint16(b, flags)
}

func native32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// chainSpec is one chain and its rules. Only the forward chain (revision,
// active version) and the point chains (defaults) depend on the state.
type chainSpec struct {
	name  string
	base  bool
	rules []ruleSpec
}

type ruleSpec struct {
	exprs   []expr.Any
	comment string
}

// revisionComment is the comment of the forward chain's first rule: how
// Verify finds the revision in the kernel.
func revisionComment(rev uint64) string { return "bulkhead revision " + strconv.FormatUint(rev, 10) }

func parseRevisionComment(s string) (uint64, bool) {
	rest, ok := strings.CutPrefix(s, "bulkhead revision ")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(rest, 10, 64)
	return n, err == nil
}

// vname is the kernel name of version v of a versioned set or chain.
func vname(base string, v int) string { return base + "_" + strconv.Itoa(v) }

// chains returns, for version v: the forward chain (jumping to version v),
// version v's egress and ingress chains, and the shared verdict, drop and
// reject chains. sets maps base names to version v's sets.
func (c *compiled) chains(cfg Config, sets map[string]*nftables.Set, v int) []chainSpec {
	ctStateAny := func(bits uint32) []expr.Any {
		return []expr.Any{
			&expr.Ct{Key: expr.CtKeySTATE, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(bits), Xor: native32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: native32(0)},
		}
	}
	lookup := func(set string, sreg, dreg uint32, isMap bool) *expr.Lookup {
		s := sets[set]
		return &expr.Lookup{SourceRegister: sreg, DestRegister: dreg, IsDestRegSet: isMap, SetName: s.Name, SetID: s.ID}
	}
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	gotoChain := func(name string) *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictGoto, Chain: name} }

	// markAny tests whether the ct mark has any of bits.
	markAny := func(bits Mark) []expr.Any {
		return []expr.Any{
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(uint32(bits)), Xor: native32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: native32(0)},
		}
	}
	setMetaMark := func(reg uint32) *expr.Meta {
		return &expr.Meta{Key: expr.MetaKeyMARK, Register: reg, SourceRegister: true}
	}
	jumpL7 := &expr.Verdict{Kind: expr.VerdictJump, Chain: ChainL7}
	forward := chainSpec{name: ChainForward, base: true, rules: []ruleSpec{
		// Packets of connections waiting for an L7 decision, and of those
		// an L7 verdict dropped; the only test every other packet pays.
		{exprs: append(markAny(MarkL7Pending|Mark(Drop)<<markActShift), jumpL7), comment: revisionComment(c.revision)},
		{exprs: append(ctStateAny(ctEstablished|ctRelated), accept)},
		{exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
			lookup(SetWorkloads, reg1, 0, false),
			&expr.Verdict{Kind: expr.VerdictJump, Chain: vname(ChainEgress, v)},
		}},
		// The ingress chain overwrites the ct mark: an egress point left
		// pending is kept in the packet mark meanwhile.
		{exprs: []expr.Any{
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg2, Len: 4, Mask: native32(uint32(MarkL7Pending)), Xor: native32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg2, Data: native32(0)},
			setMetaMark(reg1),
		}},
		{exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg1},
			lookup(SetWorkloads, reg1, 0, false),
			&expr.Verdict{Kind: expr.VerdictJump, Chain: vname(ChainIngress, v)},
		}},
		// Ingress allowed what egress left pending: pending it stays
		// (a drop at ingress never gets here).
		{exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg2, Len: 4, Mask: native32(uint32(MarkL7Pending)), Xor: native32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg2, Data: native32(0)},
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg2},
			&expr.Bitwise{SourceRegister: reg2, DestRegister: reg2, Len: 4, Mask: native32(uint32(MarkL7Pending)), Xor: native32(0)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg2, Data: native32(0)},
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg1, SourceRegister: true},
		}},
		// The first packet of a pending connection (UDP carries payload).
		{exprs: append(markAny(MarkL7Pending), jumpL7)},
	}}

	point := func(name string, ingress bool) chainSpec {
		ifKey, v4off, v6off, policy, def := expr.MetaKeyIIFNAME, uint32(16), uint32(24), MapEgress, c.egressDef
		if ingress {
			ifKey, v4off, v6off, policy, def = expr.MetaKeyOIFNAME, 12, 8, MapIngress, c.ingressDef
		}
		ident := func(nfproto byte, off, size uint32, set string) ruleSpec {
			return ruleSpec{exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{nfproto}},
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
				lookup(set, reg1, reg1, true),
				&expr.Ct{Key: expr.CtKeyMARK, Register: reg1, SourceRegister: true},
			}}
		}
		// The lookup key: interface, the peer identity just stored in the
		// ct mark, protocol, and the 16 bits at portOff of the transport
		// header (destination port, or ICMP type and code).
		// At egress, an FQDN dispatch found by the lookup goes on to the
		// dispatch rules instead (fqdn.go).
		fqdn := !ingress && len(c.dispatch.list) > 0
		var dispatch []ruleSpec
		if fqdn {
			dispatch = c.dispatchRules()
		}
		decide := func(guard []expr.Any, portOff uint32) ruleSpec {
			r := ruleSpec{exprs: append(guard,
				&expr.Meta{Key: ifKey, Register: regKey},
				&expr.Ct{Key: expr.CtKeyMARK, Register: regPeer},
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: regProto},
				&expr.Payload{DestRegister: regPort, Base: expr.PayloadBaseTransportHeader, Offset: portOff, Len: 2},
				lookup(policy, regKey, reg1, true),
				&expr.Byteorder{SourceRegister: reg1, DestRegister: reg1, Op: expr.ByteorderNtoh, Len: 4, Size: 4},
				&expr.Ct{Key: expr.CtKeyMARK, Register: reg1, SourceRegister: true},
			)}
			if fqdn {
				r.exprs = append(r.exprs, dispatchGuard()...)
			}
			r.exprs = append(r.exprs, gotoChain(ChainVerdict))
			return r
		}
		// A set rather than `meta l4proto icmp`: nft would hide that
		// comparison as a mere dependency of the transport header load.
		icmp := func(is bool) []expr.Any {
			l := lookup(SetICMP, reg1, 0, false)
			l.Invert = !is
			return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1}, l}
		}
		setPeer := func(id Identity) ruleSpec {
			return ruleSpec{exprs: []expr.Any{
				&expr.Immediate{Register: reg1, Data: binary.BigEndian.AppendUint32(nil, uint32(id))},
				&expr.Ct{Key: expr.CtKeyMARK, Register: reg1, SourceRegister: true},
			}}
		}
		rules := []ruleSpec{
			// Policy needs conntrack: without it the verdict could not be
			// remembered, so untracked packets are refused too.
			{exprs: append(ctStateAny(ctInvalid|ctUntracked), drop)},
			// The peer is World unless an identity range names it.
			setPeer(World),
			ident(unix.NFPROTO_IPV4, v4off, 4, MapIdent4),
			ident(unix.NFPROTO_IPV6, v6off, 16, MapIdent6),
		}
		if ingress {
			rules = append(rules, c.sessionRules()...)
		}
		rules = append(rules,
			decide(icmp(false), 2),
			decide(icmp(true), 0),
		)
		rules = append(rules, dispatch...)
		// Nothing for this peer: the entries for any peer.
		rules = append(rules,
			setPeer(AnyPeer),
			decide(icmp(false), 2),
			decide(icmp(true), 0),
		)
		rules = append(rules, dispatch...)
		return chainSpec{name: name, rules: append(rules,
			ruleSpec{exprs: []expr.Any{
				&expr.Immediate{Register: reg1, Data: native32(uint32(def))},
				&expr.Ct{Key: expr.CtKeyMARK, Register: reg1, SourceRegister: true},
				gotoChain(ChainVerdict),
			}},
		)}
	}

	actionIs := func(a Action, target string) ruleSpec {
		return ruleSpec{exprs: []expr.Any{
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(markActMask), Xor: native32(0)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: native32(uint32(a) << markActShift)},
			gotoChain(target),
		}}
	}
	// NFLOG cannot carry conntrack data on this kernel, so the ct mark is
	// copied into the packet mark (which NFLOG carries) of the packet we
	// are about to drop anyway.
	logRule := func(prefix string) ruleSpec {
		return ruleSpec{exprs: []expr.Any{
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg1},
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1, SourceRegister: true},
			&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(cfg.LogRate), Unit: expr.LimitTimeSecond, Burst: cfg.LogBurst},
			&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: cfg.LogGroup, Data: []byte(prefix)},
		}}
	}
	queue := &expr.Target{Name: "NFQUEUE", Rev: 3, Info: ptr(xt.Unknown(nfqueueInfo(cfg.L7Queue, cfg.L7Queues, c.l7FailOpen)))}
	clearMeta := []expr.Any{&expr.Immediate{Register: reg1, Data: native32(0)}, setMetaMark(reg1)}
	l7 := chainSpec{name: ChainL7, rules: []ruleSpec{
		// Decided: an L7 verdict of drop or reject, for every later packet.
		{exprs: []expr.Any{
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(uint32(MarkL7Pending)), Xor: native32(0)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: native32(0)},
			gotoChain(ChainVerdict),
		}},
		// Back from the queue reader (NF_REPEAT) with the final mark.
		{exprs: append([]expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg2, Len: 4, Mask: native32(uint32(MarkL7Verdict)), Xor: native32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg2, Data: native32(0)},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(markDecided), Xor: native32(0)},
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg1, SourceRegister: true},
		}, append(clearMeta, gotoChain(ChainL7Done))...)},
		// TCP without payload (the handshake, pure ACKs) passes.
		{exprs: append([]expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.NFPROTO_IPV4}},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{ProtoTCP}},
			&expr.Payload{DestRegister: regKey, Base: expr.PayloadBaseNetworkHeader, Offset: 0, Len: 1},
			&expr.Payload{DestRegister: regKey + 1, Base: expr.PayloadBaseTransportHeader, Offset: 12, Len: 1},
			&expr.Bitwise{SourceRegister: regKey + 1, DestRegister: regKey + 1, Len: 1, Mask: []byte{0xf0}, Xor: []byte{0}},
			&expr.Payload{DestRegister: regKey + 2, Base: expr.PayloadBaseNetworkHeader, Offset: 2, Len: 2},
			lookup(SetBare4, regKey, 0, false),
		}, append(clearMeta, accept)...)},
		{exprs: append([]expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.NFPROTO_IPV6}},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{ProtoTCP}},
			&expr.Payload{DestRegister: regKey, Base: expr.PayloadBaseTransportHeader, Offset: 12, Len: 1},
			&expr.Bitwise{SourceRegister: regKey, DestRegister: regKey, Len: 1, Mask: []byte{0xf0}, Xor: []byte{0}},
			&expr.Payload{DestRegister: regKey + 1, Base: expr.PayloadBaseNetworkHeader, Offset: 4, Len: 2},
			lookup(SetBare6, regKey, 0, false),
		}, append(clearMeta, accept)...)},
		// Payload: to the reader, with the pending mark and the direction
		// in the packet mark (this kernel cannot hand it the conntrack
		// entry).
		{exprs: []expr.Any{
			&expr.Ct{Key: expr.CtKeyDIRECTION, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{1}}, // IP_CT_DIR_REPLY
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(^uint32(MarkL7Reply)), Xor: native32(uint32(MarkL7Reply))},
			setMetaMark(reg1),
			queue,
		}},
		{exprs: []expr.Any{
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg1},
			setMetaMark(reg1),
			queue,
		}},
	}}
	l7done := chainSpec{name: ChainL7Done, rules: []ruleSpec{
		{exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: ChainVerdict}}},
		{exprs: []expr.Any{accept}},
	}}
	return []chainSpec{
		forward,
		point(vname(ChainEgress, v), false),
		point(vname(ChainIngress, v), true),
		{name: ChainVerdict, rules: []ruleSpec{actionIs(Drop, ChainDrop), actionIs(Reject, ChainReject)}},
		{name: ChainDrop, rules: []ruleSpec{logRule(LogPrefixDrop), {exprs: []expr.Any{drop}}}},
		{name: ChainReject, rules: []ruleSpec{
			logRule(LogPrefixReject),
			{exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{ProtoTCP}},
				&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
			}},
			{exprs: []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}}},
		}},
		l7,
		l7done,
	}
}

func ptr[T any](v T) *T { return &v }

func commentData(s string) []byte {
	if s == "" {
		return nil
	}
	return userdata.AppendString(nil, userdata.TypeComment, s)
}
