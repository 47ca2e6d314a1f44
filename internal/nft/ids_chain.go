package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// The inspection data plane (HostState.IDS) lives in a table of its own,
// "inet <Table>_ids", so that the policy table is the same, byte for byte,
// with or without IDS, and a full apply of the policy (which recreates its
// table) never interrupts inspection:
//
//	table inet bulkhead_ids {
//		set detect  { type ifname }   # interfaces inspected from a copy
//		set prevent { type ifname }   # interfaces inspected inline
//		chain inspect {
//			type filter hook forward priority <Priority+10>; policy accept
//			meta mark & 0x80000000 != 0 ct mark set ct mark | 0x80000000 goto block
//			ct mark & 0x80000000 != 0 drop
//			iifname @prevent queue (xt NFQUEUE, balanced by flow hash, bypass)
//			oifname @prevent queue ...
//			iifname @detect goto copy
//			oifname @detect goto copy
//		}
//		chain copy  { log group <IDSLogGroup> queue-threshold 16 }
//		chain block { meta l4proto tcp reject with tcp reset; drop }
//	}
//
// The chain's priority is after the policy's filter chain: a packet the
// policy dropped never reaches it, so only allowed traffic is inspected.
// An accepting policy chain does not end the hook; this chain sees every
// packet of an inspected interface's flows, SYN included.
//
// Detect mode copies each packet to NFLOG (no verdict waits for the
// reader); a packet between two inspected interfaces is copied once (goto:
// the copy chain ends the walk). A packet touching a prevent interface is
// queued, even if its other end is a detect interface. The queue rule
// spreads packets over IDSQueues queues by the kernel's flow hash
// (xt_NFQUEUE without the CPU fanout flag: nfqueue_hash orders the two
// addresses before hashing them with the protocol, so both directions of
// a connection reach the same queue, hence the same reader; ports are not
// hashed, so all connections between two addresses share a queue, as
// TestIDSQueueBalanceKeepsFlows shows). Unless
// IDSFailClosed, the bypass flag accepts packets while no reader is bound:
// an agent outage does not cut the data center off.
//
// The reader answers a packet a drop or reject signature matched with
// NF_REPEAT and MarkIDSBlock in the packet mark: the packet walks the
// chain again, its first rule writes the bit into the ct mark and rejects
// the packet (TCP: a reset toward the sender; others: dropped), and the
// second rule drops every later packet of the flow in the kernel. (This
// kernel cannot set a ct mark from a queue verdict.)

// Names in the IDS table.
const (
	IDSTableSuffix = "_ids"
	SetIDSDetect   = "detect"
	SetIDSPrevent  = "prevent"
	ChainIDS       = "inspect"
	ChainIDSCopy   = "copy"
	ChainIDSBlock  = "block"

	// IDS modes of IDSWorkload.Mode.
	IDSDetect  = "detect"
	IDSPrevent = "prevent"

	// DefaultIDSQueue is past the L7 queues' default range (7 and up to
	// 64 more, one per CPU), so the two never overlap by default.
	DefaultIDSQueue    = 128
	DefaultIDSLogGroup = 102
	// idsPriorityAfter is how far after Config.Priority the inspection
	// chain hooks.
	idsPriorityAfter = 10
	// idsQThreshold is how many copies NFLOG batches into one message
	// (the reader bounds the wait with its flush timeout).
	idsQThreshold = 16
)

// MarkIDSBlock is the IDS's bit (see Mark): in a packet mark, the queue
// reader's "block this flow"; in a ct mark, a flow the IDS blocked.
const MarkIDSBlock Mark = 1 << 31

// idsCompiled is the kernel form of an IDSState: the interfaces per mode.
type idsCompiled struct {
	detect, prevent [][]byte // ifname keys, sorted
}

func compileIDS(s *IDSState) (*idsCompiled, error) {
	if s == nil || len(s.Workloads) == 0 {
		return nil, nil
	}
	c := &idsCompiled{}
	seen := map[string]string{}
	for i, w := range s.Workloads {
		if w.Interface == "" || len(w.Interface) > 15 {
			return nil, fmt.Errorf("nft: IDS workload %d (%s): interface %q: want 1 to 15 bytes", i, w.Name, w.Interface)
		}
		if m, ok := seen[w.Interface]; ok && m != w.Mode {
			return nil, fmt.Errorf("nft: IDS workload %d (%s): interface %s is both %s and %s", i, w.Name, w.Interface, m, w.Mode)
		} else if ok {
			continue
		}
		seen[w.Interface] = w.Mode
		switch w.Mode {
		case IDSDetect:
			c.detect = append(c.detect, ifnameKey(w.Interface))
		case IDSPrevent:
			c.prevent = append(c.prevent, ifnameKey(w.Interface))
		default:
			return nil, fmt.Errorf("nft: IDS workload %d (%s): mode %q: want %q or %q", i, w.Name, w.Mode, IDSDetect, IDSPrevent)
		}
	}
	cmp := func(a, b []byte) int { return slices.Compare(a, b) }
	slices.SortFunc(c.detect, cmp)
	slices.SortFunc(c.prevent, cmp)
	return c, nil
}

// idsKernel is what the Table knows of the IDS table in the kernel.
type idsKernel struct {
	known bool         // false until the first sync: a table left by an earlier process may exist
	cur   *idsCompiled // nil: the table is absent
}

func (t *Table) idsTable() *nftables.Table {
	return &nftables.Table{Name: t.cfg.Table + IDSTableSuffix, Family: nftables.TableFamilyINet}
}

func (t *Table) idsSets() (detect, prevent *nftables.Set) {
	tbl := t.idsTable()
	mk := func(id uint32, name string) *nftables.Set {
		return &nftables.Set{Table: tbl, ID: id, Name: name, KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian}
	}
	return mk(201, SetIDSDetect), mk(202, SetIDSPrevent)
}

// nfqueueBalance is struct xt_NFQ_info_v3 for a queue range balanced by
// the kernel's flow hash (no CPU fanout flag).
func nfqueueBalance(queue, total uint16, bypass bool) []byte {
	var flags uint16
	if bypass {
		flags |= nfqBypass
	}
	b := binary.NativeEndian.AppendUint16(nil, queue)
	b = binary.NativeEndian.AppendUint16(b, max(total, 1))
	return binary.NativeEndian.AppendUint16(b, flags)
}

// idsChains returns the inspection chains (the base chain first).
func (t *Table) idsChains() []chainSpec {
	detect, prevent := t.idsSets()
	in := func(key expr.MetaKey, s *nftables.Set, then expr.Any) ruleSpec {
		return ruleSpec{exprs: []expr.Any{
			&expr.Meta{Key: key, Register: reg1},
			&expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID},
			then,
		}}
	}
	queue := func() expr.Any {
		return &expr.Target{Name: "NFQUEUE", Rev: 3, Info: ptr(xt.Unknown(nfqueueBalance(t.cfg.IDSQueue, t.cfg.IDSQueues, !t.cfg.IDSFailClosed)))}
	}
	copyTo := &expr.Verdict{Kind: expr.VerdictGoto, Chain: ChainIDSCopy}
	block := MarkIDSBlock
	inspect := chainSpec{name: ChainIDS, base: true, rules: []ruleSpec{
		// Back from the reader with a block verdict.
		{exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(uint32(block)), Xor: native32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: native32(0)},
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(^uint32(block)), Xor: native32(uint32(block))},
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg1, SourceRegister: true},
			&expr.Verdict{Kind: expr.VerdictGoto, Chain: ChainIDSBlock},
		}, comment: "ids block verdict"},
		// A blocked flow: its later packets never reach the reader.
		{exprs: []expr.Any{
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(uint32(block)), Xor: native32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: native32(0)},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}, comment: "ids blocked flow"},
		in(expr.MetaKeyIIFNAME, prevent, queue()),
		in(expr.MetaKeyOIFNAME, prevent, queue()),
		in(expr.MetaKeyIIFNAME, detect, copyTo),
		in(expr.MetaKeyOIFNAME, detect, copyTo),
	}}
	copyChain := chainSpec{name: ChainIDSCopy, rules: []ruleSpec{{exprs: []expr.Any{
		&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_QTHRESHOLD, Group: t.cfg.IDSLogGroup, QThreshold: idsQThreshold},
	}}}}
	blockChain := chainSpec{name: ChainIDSBlock, rules: []ruleSpec{
		{exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{ProtoTCP}},
			&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
		}},
		{exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}},
	}}
	return []chainSpec{inspect, copyChain, blockChain}
}

// addIDSChains adds the IDS table's chains and their rules.
func (t *Table) addIDSChains(c *nftables.Conn) {
	tbl := t.idsTable()
	policy := nftables.ChainPolicyAccept
	specs := t.idsChains()
	chains := make([]*nftables.Chain, len(specs))
	for i, cs := range specs {
		ch := &nftables.Chain{Table: tbl, Name: cs.name}
		if cs.base {
			ch.Type = nftables.ChainTypeFilter
			ch.Hooknum = nftables.ChainHookForward
			ch.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(t.cfg.Priority + idsPriorityAfter))
			ch.Policy = &policy
		}
		c.AddChain(ch)
		chains[i] = ch
	}
	for i, cs := range specs {
		for _, r := range cs.rules {
			c.AddRule(&nftables.Rule{Table: tbl, Chain: chains[i], Exprs: r.exprs, UserData: commentData(r.comment)})
		}
	}
}

func keyElems(keys [][]byte) []nftables.SetElement {
	out := make([]nftables.SetElement, len(keys))
	for i, k := range keys {
		out[i] = nftables.SetElement{Key: k}
	}
	return out
}

// syncIDS brings the IDS table to st.IDS: created when inspection starts,
// its interface sets diffed while it goes on (the chains stay, so no
// packet of an inspected flow escapes during an update), deleted when it
// ends. Called with mu held, after the policy table is applied.
func (t *Table) syncIDS(st *HostState) error {
	want, err := compileIDS(st.IDS)
	if err != nil {
		return err
	}
	have := t.ids
	if have.known && have.cur == nil && want == nil {
		return nil // the common case: no IDS, nothing to do
	}
	c, err := t.conn(0)
	if err != nil {
		return err
	}
	tbl := t.idsTable()
	detect, prevent := t.idsSets()
	switch {
	case want == nil:
		c.AddTable(tbl)
		c.DelTable(tbl)
	case !have.known || have.cur == nil:
		// Replace whatever is there.
		c.AddTable(tbl)
		c.DelTable(tbl)
		c.AddTable(tbl)
		for _, s := range []struct {
			set  *nftables.Set
			keys [][]byte
		}{{detect, want.detect}, {prevent, want.prevent}} {
			if err := c.AddSet(s.set, keyElems(s.keys)); err != nil {
				return fmt.Errorf("nft: IDS table: set %s: %w", s.set.Name, err)
			}
		}
		t.addIDSChains(c)
	default:
		for _, s := range []struct {
			set       *nftables.Set
			old, keys [][]byte
		}{{detect, have.cur.detect, want.detect}, {prevent, have.cur.prevent, want.prevent}} {
			del, add := diffKeys(s.old, s.keys)
			if err := addElems(c, s.set, del, true); err != nil {
				return fmt.Errorf("nft: IDS table: %w", err)
			}
			if err := addElems(c, s.set, add, false); err != nil {
				return fmt.Errorf("nft: IDS table: %w", err)
			}
		}
	}
	if err := c.Flush(); err != nil {
		t.ids = idsKernel{} // unknown now: replace it
		if have.known && have.cur != nil && want != nil {
			// The element diff met a table someone changed or removed.
			return t.syncIDS(st)
		}
		return fmt.Errorf("nft: IDS table %s: %w", tbl.Name, err)
	}
	t.ids = idsKernel{known: true, cur: want}
	return nil
}

// verifyIDS adds to drift what differs between the kernel's IDS table and
// the one applied (presence and set sizes). After a drift the next apply
// replaces the IDS table; otherwise it is never recreated, since deleting
// the chain drops the packets waiting in the queue.
func (t *Table) verifyIDS(c *nftables.Conn, drift func(string, ...any)) error {
	if !t.ids.known {
		return nil
	}
	n, report := 0, drift
	drift = func(format string, args ...any) {
		n++
		report(format, args...)
	}
	defer func() {
		if n > 0 {
			t.ids = idsKernel{}
		}
	}()
	name := t.cfg.Table + IDSTableSuffix
	_, err := c.ListTableOfFamily(name, nftables.TableFamilyINet)
	present := err == nil
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("nft: verify: table %s: %w", name, err)
	}
	want := t.ids.cur
	switch {
	case want == nil && present:
		drift("table inet %s is present, want none", name)
		return nil
	case want == nil:
		return nil
	case !present:
		drift("table inet %s is missing", name)
		return nil
	}
	detect, prevent := t.idsSets()
	for _, s := range []struct {
		set  *nftables.Set
		keys [][]byte
	}{{detect, want.detect}, {prevent, want.prevent}} {
		got, err := c.GetSetElements(s.set)
		if err != nil {
			drift("set %s of %s: %v", s.set.Name, name, err)
			continue
		}
		if len(got) != len(s.keys) {
			drift("set %s of %s has %d elements, want %d", s.set.Name, name, len(got), len(s.keys))
		}
	}
	return nil
}

// removeIDS deletes the IDS table if present. Called with mu held.
func (t *Table) removeIDS() error {
	c, err := t.conn(0)
	if err != nil {
		return err
	}
	tbl := t.idsTable()
	c.AddTable(tbl)
	c.DelTable(tbl)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nft: remove table %s: %w", tbl.Name, err)
	}
	t.ids = idsKernel{known: true}
	return nil
}
