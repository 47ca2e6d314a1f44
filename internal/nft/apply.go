package nft

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Table installs HostStates into one nftables table. It is safe for
// concurrent use; applies are serialized.
//
// The sets and the egress/ingress chains exist twice in the table, as
// versions 0 and 1; the forward chain jumps to one of them. A packet's walk
// through the forward hook reads the forward chain's rules as of one
// generation, but each set lookup reads the set as of the moment of that
// lookup, and a batch's element changes do not become visible at the same
// instant as its rule changes (the set backends publish them while the
// commit goes on), so a set must never change while a packet can reach it.
// An apply therefore runs in two batches: the first writes the version no
// rule points at (after every walk that could still be in it has ended, see
// quiesce), the second, which changes no element, turns the forward chain
// to it. Every lookup of a walk hits one version, and that version does not
// change while traffic can reach it.
type Table struct {
	cfg Config

	mu      sync.Mutex
	active  int       // the version the forward chain jumps to
	cur     *compiled // what version active holds; nil: unknown
	standby *compiled // what version 1-active holds; nil: unknown
	// grace, when not nil, is closed once no packet can still be walking
	// the standby version (see left).
	grace <-chan struct{}
	ids   idsKernel // the inspection table (ids_chain.go)
}

// quiet is how long quiesce waits when the kernel cannot wait for an RCU
// grace period (membarrier refused): far longer than a walk of the forward
// hook, which takes microseconds.
const quiet = 50 * time.Millisecond

// left records that the forward chain has just stopped jumping to what is
// now the standby version: packets may still be walking it. Every walk of
// the forward hook runs inside one RCU read-side section, so an RCU grace
// period that starts after the batch that turned the forward chain
// outlasts every walk that could have entered the version. membarrier's
// global command is such a grace period (synchronize_rcu); it runs in the
// background, so applies further apart than a grace period do not wait.
// Kernels with nohz_full CPUs refuse it, and a fixed pause stands in.
func (t *Table) left() {
	done := make(chan struct{})
	t.grace = done
	go func() {
		defer close(done)
		const membarrierCmdGlobal = 1 // MEMBARRIER_CMD_GLOBAL
		if _, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0); errno != 0 {
			time.Sleep(quiet)
		}
	}()
}

// quiesce returns once no packet can still be walking the standby version.
func (t *Table) quiesce() {
	if t.grace != nil {
		<-t.grace
		t.grace = nil
	}
}

// New returns a Table for cfg. It touches nothing in the kernel.
func New(cfg Config) (*Table, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Table{cfg: cfg.withDefaults()}, nil
}

// Mode says how a revision reached the kernel.
type Mode string

const (
	ModeFull        Mode = "full"
	ModeIncremental Mode = "incremental"
)

// Stats describes one apply.
type Stats struct {
	Mode     Mode
	Revision uint64
	// Version is the half of the table that now decides (0 or 1).
	Version int
	// Added and Deleted count kernel set elements in the enforcing batch.
	Added, Deleted int
	Counts         Counts // elements per set of one version
	Compile        time.Duration
	// Kernel is the time of the enforcing batch, from building it to the
	// kernel's acknowledgement: the revision decides from then on.
	Kernel time.Duration
	// Standby is the time of a full apply's second batch, which fills the
	// other version for the next incremental apply; StandbyErr is its
	// failure (the revision is enforced all the same; the next Apply will
	// be full).
	Standby    time.Duration
	StandbyErr error
	// FullFallback is set when Apply tried an incremental batch, the
	// kernel refused it (drift), and a full apply followed.
	FullFallback error
}

// Apply installs st: as a diff of map elements when the table's state is
// known, else (or if the kernel refuses the diff) by replacing the table.
// Either way the revision takes effect in one atomic batch, and no packet
// is decided by a mix of two revisions.
func (t *Table) Apply(st *HostState) (Stats, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	start := time.Now()
	c, err := compile(st, t.cur)
	if err != nil {
		return Stats{}, err
	}
	compileTime := time.Since(start)
	if t.cur == nil || t.standby == nil || !sameFQDN(c, t.cur) || !sameFQDN(c, t.standby) ||
		!sameSessions(c, t.cur) || !sameSessions(c, t.standby) {
		return t.withIDS(st)(t.full(c, compileTime))
	}
	s, err := t.incremental(c, compileTime)
	if err == nil {
		return t.withIDS(st)(s, nil)
	}
	s, ferr := t.full(c, compileTime)
	s.FullFallback = err
	return t.withIDS(st)(s, ferr)
}

// withIDS returns a function that, after a successful policy apply, brings
// the inspection table to st (ids_chain.go).
func (t *Table) withIDS(st *HostState) func(Stats, error) (Stats, error) {
	return func(s Stats, err error) (Stats, error) {
		if err != nil {
			return s, err
		}
		if err := t.syncIDS(st); err != nil {
			return s, fmt.Errorf("nft: apply revision %d: %w", st.Revision, err)
		}
		return s, nil
	}
}

// ApplyFull installs st in full: the way to start or to recover from
// drift. On a table that holds what this Table applied, it rebuilds the
// standby version from scratch, turns the forward chain to it in a batch of
// its own, then rebuilds the other version (see rebuild); otherwise (the
// first apply, a refused rebuild, other FQDN sets) it replaces the whole
// table in one batch, then fills the standby version in a second.
func (t *Table) ApplyFull(st *HostState) (Stats, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	start := time.Now()
	c, err := compile(st, t.cur)
	if err != nil {
		return Stats{}, err
	}
	return t.withIDS(st)(t.full(c, time.Since(start)))
}

// ApplyIncremental installs st as a diff: the standby version's set elements
// are brought to st and its chains rewritten only if the defaults changed,
// in one batch, then the forward chain (carrying the revision) is turned to
// it in a second batch that changes no element. If the kernel refuses a
// batch (someone changed the table), the forward chain has not moved and
// the error says so; Apply would then apply in full.
func (t *Table) ApplyIncremental(st *HostState) (Stats, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur == nil || t.standby == nil {
		return Stats{}, fmt.Errorf("nft: incremental apply of revision %d: %w", st.Revision, ErrNotApplied)
	}
	start := time.Now()
	c, err := compile(st, t.cur)
	if err != nil {
		return Stats{}, err
	}
	if !sameFQDN(c, t.cur) || !sameFQDN(c, t.standby) {
		return Stats{}, fmt.Errorf("nft: incremental apply of revision %d: the FQDN sets or their tests changed: %w", st.Revision, ErrNotApplied)
	}
	if !sameSessions(c, t.cur) || !sameSessions(c, t.standby) {
		return Stats{}, fmt.Errorf("nft: incremental apply of revision %d: the session ranges changed: %w", st.Revision, ErrNotApplied)
	}
	return t.withIDS(st)(t.incremental(c, time.Since(start)))
}

// conn opens a netlink connection able to carry a batch of about size bytes.
func (t *Table) conn(size int) (*nftables.Conn, error) {
	buf := max(size*2, 1<<20)
	opts := []nftables.ConnOption{nftables.WithSockOptions(func(c *netlink.Conn) error {
		// A whole revision goes in one sendmsg: the socket buffer must
		// hold it, beyond net.core.wmem_max (hence the FORCE variants,
		// which need CAP_NET_ADMIN, as does everything here).
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		err = rc.Control(func(fd uintptr) {
			serr = errors.Join(
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, buf),
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20),
			)
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		// Errors must not echo our (large) messages back.
		return c.SetOption(netlink.CapAcknowledge, true)
	})}
	if t.cfg.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(t.cfg.NetNS))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nft: netlink: %w", err)
	}
	return c, nil
}

func (t *Table) table() *nftables.Table {
	return &nftables.Table{Name: t.cfg.Table, Family: nftables.TableFamilyINet}
}

// setDefs returns version v's sets (and the shared icmp set) by base name.
// IDs are fixed, not left to the library's global counter, so that
// concurrent Tables do not race.
func (t *Table) setDefs(v int) map[string]*nftables.Set {
	tbl := t.table()
	key28 := nftables.TypeInteger
	key28.Bytes = keyLen
	bare4, bare6 := nftables.TypeInteger, nftables.TypeInteger
	bare4.Bytes, bare6.Bytes = bare4Len, bare6Len
	id := uint32(1 + 10*v)
	return map[string]*nftables.Set{
		// Host key order tells nft to print the names as strings.
		SetWorkloads: {Table: tbl, ID: id, Name: vname(SetWorkloads, v), KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian},
		MapIdent4:    {Table: tbl, ID: id + 1, Name: vname(MapIdent4, v), IsMap: true, Interval: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeMark},
		MapIdent6:    {Table: tbl, ID: id + 2, Name: vname(MapIdent6, v), IsMap: true, Interval: true, KeyType: nftables.TypeIP6Addr, DataType: nftables.TypeMark},
		MapEgress:    {Table: tbl, ID: id + 3, Name: vname(MapEgress, v), IsMap: true, Interval: true, KeyType: key28, DataType: nftables.TypeMark},
		MapIngress:   {Table: tbl, ID: id + 4, Name: vname(MapIngress, v), IsMap: true, Interval: true, KeyType: key28, DataType: nftables.TypeMark},
		SetICMP:      {Table: tbl, ID: 100, Name: SetICMP, Constant: true, KeyType: nftables.TypeInetProto},
		SetBare4:     {Table: tbl, ID: 101, Name: SetBare4, Constant: true, KeyType: bare4},
		SetBare6:     {Table: tbl, ID: 102, Name: SetBare6, Constant: true, KeyType: bare6},
	}
}

// versioned lists the sets that exist once per version.
var versioned = []string{SetWorkloads, MapIdent4, MapIdent6, MapEgress, MapIngress}

// elemChunk keeps one NEWSETELEM message's element list under the 64 KiB a
// netlink attribute can hold (an egress element takes at most ~60 bytes).
const elemChunk = 800

func toSetElements(es []elem) []nftables.SetElement {
	out := make([]nftables.SetElement, len(es))
	for i, e := range es {
		out[i] = nftables.SetElement{Key: e.key, Val: e.val, IntervalEnd: e.end}
	}
	return out
}

func addElems(c *nftables.Conn, s *nftables.Set, es []elem, del bool) error {
	for i := 0; i < len(es); i += elemChunk {
		chunk := toSetElements(es[i:min(i+elemChunk, len(es))])
		var err error
		if del {
			err = c.SetDeleteElements(s, chunk)
		} else {
			err = c.SetAddElements(s, chunk)
		}
		if err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	return nil
}

// addChains adds chains (create) or empties them (otherwise), then adds
// their rules. All chains exist before any rule jumps to one.
func (t *Table) addChains(c *nftables.Conn, specs []chainSpec, create bool) {
	tbl := t.table()
	policy := nftables.ChainPolicyAccept
	chains := make([]*nftables.Chain, len(specs))
	for i, cs := range specs {
		ch := &nftables.Chain{Table: tbl, Name: cs.name}
		if !create {
			c.FlushChain(ch)
		} else {
			if cs.base {
				ch.Type = nftables.ChainTypeFilter
				ch.Hooknum = nftables.ChainHookForward
				ch.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(t.cfg.Priority))
				ch.Policy = &policy
			}
			c.AddChain(ch)
		}
		chains[i] = ch
	}
	for i, cs := range specs {
		for _, r := range cs.rules {
			c.AddRule(&nftables.Rule{Table: tbl, Chain: chains[i], Exprs: r.exprs, UserData: commentData(r.comment)})
		}
	}
}

// allChains is every chain of the table, with the forward chain jumping to
// version v; cv is what version v holds, cw the other (for its defaults).
func (t *Table) allChains(v int, cv, cw *compiled) []chainSpec {
	specs := cv.chains(t.cfg, t.setDefs(v), v)
	other := cw.chains(t.cfg, t.setDefs(1-v), 1-v)
	return append(specs, other[1], other[2]) // egress and ingress of 1-v
}

func batchSize(n int) int { return 64<<10 + n*72 }

// full installs comp in full. When the table holds what this Table last
// applied, it rebuilds the standby version from scratch and turns the
// forward chain to it (rebuild), so that no object a packet may be walking
// changes. Otherwise (the first apply, an unknown or drifted table, other
// FQDN sets) it replaces the table.
func (t *Table) full(comp *compiled, compileTime time.Duration) (Stats, error) {
	if t.cur != nil && sameFQDN(comp, t.cur) {
		if st, err := t.rebuild(comp, compileTime); err == nil {
			return st, nil
		}
	}
	return t.replace(comp, compileTime)
}

// replace deletes and recreates the table in one batch. Not atomic for a
// packet crossing the commit: the new forward chain is hooked, without
// rules, before the commit, and the old one still runs after it, its sets'
// elements gone; such a packet was seen passing both undecided (ct mark 0).
// Hence only for a table in an unknown state, or when the FQDN sets change.
func (t *Table) replace(comp *compiled, compileTime time.Duration) (Stats, error) {
	start := time.Now()
	counts := comp.counts()
	total := 0
	for _, n := range counts {
		total += n
	}
	c, err := t.conn(batchSize(total))
	if err != nil {
		return Stats{}, err
	}
	tbl := t.table()
	// Add (a no-op if it exists), delete, add: replaces the table whether
	// or not it was there, in the same transaction as everything else.
	// Version 0 gets the state, version 1 only its sets and chains.
	c.AddTable(tbl)
	c.DelTable(tbl)
	c.AddTable(tbl)
	for v := 0; v < 2; v++ {
		sets := t.setDefs(v)
		for _, name := range setNames {
			s := sets[name]
			if s.Constant {
				if v == 0 { // shared; elements only at creation
					if err := c.AddSet(s, toSetElements(comp.elements(name))); err != nil {
						return Stats{}, fmt.Errorf("nft: apply revision %d: set %s: %w", comp.revision, s.Name, err)
					}
				}
				continue
			}
			if err := c.AddSet(s, nil); err != nil {
				return Stats{}, fmt.Errorf("nft: apply revision %d: set %s: %w", comp.revision, s.Name, err)
			}
			if v == 0 {
				if err := addElems(c, s, comp.elements(name), false); err != nil {
					return Stats{}, fmt.Errorf("nft: apply revision %d: %w", comp.revision, err)
				}
			}
		}
	}
	// The FQDN sets, empty: the agent's snooper fills them (fqdn.go).
	for _, s := range t.fqdnSetDefs(comp.fqdnSets) {
		if err := c.AddSet(s, nil); err != nil {
			return Stats{}, fmt.Errorf("nft: apply revision %d: set %s: %w", comp.revision, s.Name, err)
		}
	}
	t.addChains(c, t.allChains(0, comp, comp), true)
	if err := c.Flush(); err != nil {
		t.cur, t.standby = nil, nil // the kernel state is unknown now
		return Stats{}, fmt.Errorf("nft: apply revision %d (full): %w", comp.revision, err)
	}
	// Version 1 of the new table was never jumped to.
	t.active, t.cur, t.standby, t.grace = 0, comp, nil, nil
	st := Stats{
		Mode: ModeFull, Revision: comp.revision, Added: total, Counts: counts,
		Compile: compileTime, Kernel: time.Since(start),
	}
	// Fill version 1, which nothing reads, for the next incremental apply.
	start = time.Now()
	st.StandbyErr = t.fillStandby(comp, total)
	st.Standby = time.Since(start)
	return st, nil
}

// rebuild brings the standby version to comp whatever it holds (its sets
// flushed and refilled, its chains rewritten) and then, in a batch that
// changes no element, turns the forward chain to it and rewrites the shared
// chains; then it does the same to the other version, so that both hold
// comp for the next incremental apply.
func (t *Table) rebuild(comp *compiled, compileTime time.Duration) (Stats, error) {
	counts := comp.counts()
	total := 0
	for _, n := range counts {
		total += n
	}
	st := Stats{Mode: ModeFull, Revision: comp.revision, Added: total, Counts: counts, Compile: compileTime}
	start := time.Now()
	v := 1 - t.active
	if err := t.refill(comp, v, total); err != nil {
		return Stats{}, err
	}
	c, err := t.conn(0)
	if err != nil {
		return Stats{}, err
	}
	specs := comp.chains(t.cfg, t.setDefs(v), v)
	shared := append([]chainSpec{specs[0]}, specs[3:]...)
	t.addChains(c, shared, false)
	if err := c.Flush(); err != nil {
		return Stats{}, fmt.Errorf("nft: apply revision %d (full): %w", comp.revision, err)
	}
	t.active, t.standby, t.cur = v, t.cur, comp
	t.left()
	st.Version = v
	st.Kernel = time.Since(start)
	start = time.Now()
	if err := t.refill(comp, 1-v, total); err != nil {
		t.standby = nil
		st.StandbyErr = err
	} else {
		t.standby = comp
	}
	st.Standby = time.Since(start)
	return st, nil
}

// refill makes version v, which the forward chain does not jump to, hold
// comp: its sets flushed and refilled and its chains rewritten, in one batch.
func (t *Table) refill(comp *compiled, v, total int) error {
	t.quiesce()
	c, err := t.conn(batchSize(total))
	if err != nil {
		return err
	}
	sets := t.setDefs(v)
	for _, name := range versioned {
		c.FlushSet(sets[name])
		if err := addElems(c, sets[name], comp.elements(name), false); err != nil {
			return fmt.Errorf("nft: apply revision %d: version %d: %w", comp.revision, v, err)
		}
	}
	specs := comp.chains(t.cfg, sets, v)
	t.addChains(c, specs[1:3], false)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nft: apply revision %d: rebuild version %d: %w", comp.revision, v, err)
	}
	return nil
}

func (t *Table) fillStandby(comp *compiled, total int) error {
	c, err := t.conn(batchSize(total))
	if err != nil {
		return err
	}
	sets := t.setDefs(1 - t.active)
	for _, name := range versioned {
		if err := addElems(c, sets[name], comp.elements(name), false); err != nil {
			return fmt.Errorf("nft: revision %d: standby: %w", comp.revision, err)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nft: revision %d: fill standby version: %w", comp.revision, err)
	}
	t.standby = comp
	return nil
}

// diffIntervals returns the intervals to delete and to add, each in key
// order, by walking the two sorted lists together. An interval stays only if
// its start, end and data are all unchanged; otherwise the old one is deleted
// and the new one added, never edited in place.
func diffIntervals(old, cur []interval) (del, add []interval) {
	i, j := 0, 0
	for i < len(old) && j < len(cur) {
		switch c := bytes.Compare(old[i].start.key, cur[j].start.key); {
		case c < 0:
			del = append(del, old[i])
			i++
		case c > 0:
			add = append(add, cur[j])
			j++
		default:
			if !sameInterval(old[i], cur[j]) {
				del = append(del, old[i])
				add = append(add, cur[j])
			}
			i++
			j++
		}
	}
	del = append(del, old[i:]...)
	return del, append(add, cur[j:]...)
}

func sameInterval(a, b interval) bool {
	if !bytes.Equal(a.start.val, b.start.val) || (a.stop == nil) != (b.stop == nil) {
		return false
	}
	return a.stop == nil || bytes.Equal(a.stop.key, b.stop.key)
}

func unionSorted(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i] < b[j]:
			out = append(out, a[i])
			i++
		case i == len(a) || b[j] < a[i]:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	return out
}

func diffKeys(old, cur [][]byte) (del, add []elem) {
	in := make(map[string]struct{}, len(old))
	for _, k := range old {
		in[string(k)] = struct{}{}
	}
	keep := make(map[string]struct{}, len(cur))
	for _, k := range cur {
		keep[string(k)] = struct{}{}
		if _, ok := in[string(k)]; !ok {
			add = append(add, elem{key: k})
		}
	}
	for _, k := range old {
		if _, ok := keep[string(k)]; !ok {
			del = append(del, elem{key: k})
		}
	}
	return del, add
}

// sameSlice reports whether two interval lists are one and the same (a
// compile reused it), which saves walking them.
func sameSlice(a, b []interval) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func (t *Table) incremental(comp *compiled, compileTime time.Duration) (Stats, error) {
	v := 1 - t.active
	base := t.standby // what version v holds
	t.quiesce()
	start := time.Now()
	type change struct {
		set      string
		del, add []elem
	}
	var changes []change
	wDel, wAdd := diffKeys(base.workloads, comp.workloads)
	changes = append(changes, change{SetWorkloads, wDel, wAdd})
	for _, p := range []struct {
		set      string
		old, cur []interval
	}{
		{MapIdent4, base.ident4, comp.ident4},
		{MapIdent6, base.ident6, comp.ident6},
	} {
		if sameSlice(p.old, p.cur) {
			continue
		}
		d, a := diffIntervals(p.old, p.cur)
		changes = append(changes, change{p.set, flatten(d), flatten(a)})
	}
	// Per workload and direction; a point compiled from unchanged input is
	// the very same object and costs nothing.
	for _, ingress := range []bool{false, true} {
		set := MapEgress
		if ingress {
			set = MapIngress
		}
		var del, add []interval
		for _, ifc := range unionSorted(base.ifaces, comp.ifaces) {
			k := pointKey{ifc, ingress}
			po, pc := base.points[k], comp.points[k]
			if po == pc {
				continue
			}
			var o, cu []interval
			if po != nil {
				o = po.ivs
			}
			if pc != nil {
				cu = pc.ivs
			}
			d, a := diffIntervals(o, cu)
			del, add = append(del, d...), append(add, a...)
		}
		changes = append(changes, change{set, flatten(del), flatten(add)})
	}
	n := 0
	for _, ch := range changes {
		n += len(ch.del) + len(ch.add)
	}
	c, err := t.conn(batchSize(n))
	if err != nil {
		return Stats{}, err
	}
	sets := t.setDefs(v)
	st := Stats{Mode: ModeIncremental, Revision: comp.revision, Version: v, Counts: comp.counts(), Compile: compileTime}
	// Deletions first, so that an interval re-added with new data or new
	// bounds never overlaps its old self.
	for _, ch := range changes {
		if err := addElems(c, sets[ch.set], ch.del, true); err != nil {
			return Stats{}, fmt.Errorf("nft: apply revision %d: %w", comp.revision, err)
		}
		st.Deleted += len(ch.del)
	}
	for _, ch := range changes {
		if err := addElems(c, sets[ch.set], ch.add, false); err != nil {
			return Stats{}, fmt.Errorf("nft: apply revision %d: %w", comp.revision, err)
		}
		st.Added += len(ch.add)
	}
	// Version v's own chains are rewritten only when a default changed:
	// rewriting a rule that looks up a big map costs the kernel a walk
	// over the map. If the table or a chain is gone, the whole batch
	// fails and nothing changes.
	specs := comp.chains(t.cfg, sets, v)
	if comp.egressDef != base.egressDef || comp.ingressDef != base.ingressDef {
		t.addChains(c, specs[1:3], false)
	}
	if err := c.Flush(); err != nil {
		// The kernel rolled back the whole batch: it still holds what it did.
		return Stats{}, fmt.Errorf("nft: apply revision %d (incremental): %w", comp.revision, err)
	}
	t.standby = comp // version v holds comp; nothing jumps to it yet
	// Second batch, no element in it: the forward chain moves to version v
	// and carries the revision.
	rewrite := specs[:1]
	if comp.l7FailOpen != base.l7FailOpen || comp.l7FailOpen != t.cur.l7FailOpen {
		rewrite = append(slices.Clip(rewrite), specs[len(specs)-2]) // the l7 chain
	}
	t.addChains(c, rewrite, false)
	if err := c.Flush(); err != nil {
		return Stats{}, fmt.Errorf("nft: apply revision %d (incremental): turn to version %d: %w", comp.revision, v, err)
	}
	t.active, t.standby, t.cur = v, t.cur, comp
	t.left()
	st.Kernel = time.Since(start)
	return st, nil
}

// Status is what Verify found in the kernel.
type Status struct {
	Present  bool
	Revision uint64 // from the forward chain's first rule; 0 if unreadable
	Version  int    // the version the forward chain jumps to; -1 if unreadable
	Counts   Counts // elements per kernel set (versioned names: ident4_0 ...)
	// Drift lists every difference from what this Table applied; empty
	// when the kernel holds exactly that.
	Drift []string
}

// Verify reads the table back and compares it with what was applied:
// presence, revision, active version, rules per chain and element counts
// per set; with deep, every element's key and data too. An agent calls it
// periodically and re-applies in full when Drift is not empty.
func (t *Table) Verify(deep bool) (Status, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := t.conn(0)
	if err != nil {
		return Status{}, err
	}
	st := Status{Version: -1}
	drift := func(format string, args ...any) { st.Drift = append(st.Drift, fmt.Sprintf(format, args...)) }
	tbl, err := c.ListTableOfFamily(t.cfg.Table, nftables.TableFamilyINet)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist) {
			drift("table inet %s is missing", t.cfg.Table)
			return st, nil
		}
		return st, fmt.Errorf("nft: verify: table %s: %w", t.cfg.Table, err)
	}
	st.Present = true
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return st, fmt.Errorf("nft: verify: chains: %w", err)
	}
	have := map[string]*nftables.Chain{}
	for _, ch := range chains {
		if ch.Table.Name == tbl.Name {
			have[ch.Name] = ch
		}
	}
	known := t.cur != nil
	specs := []chainSpec{{name: ChainForward}}
	if known {
		other := t.standby
		if other == nil { // its rules have the same shape
			other = t.cur
		}
		specs = t.allChains(t.active, t.cur, other)
	}
	for _, cs := range specs {
		ch, ok := have[cs.name]
		if !ok {
			drift("chain %s is missing", cs.name)
			continue
		}
		rules, err := c.GetRules(tbl, ch)
		if err != nil {
			return st, fmt.Errorf("nft: verify: chain %s: %w", cs.name, err)
		}
		if cs.name == ChainForward {
			if len(rules) > 0 {
				if s, ok := userdataComment(rules[0].UserData); ok {
					st.Revision, _ = parseRevisionComment(s)
				}
			}
			st.Version = jumpVersion(rules)
			if known && st.Revision != t.cur.revision {
				drift("revision %d in the kernel, %d applied", st.Revision, t.cur.revision)
			}
			if known && st.Version != t.active {
				drift("forward chain jumps to version %d, want %d", st.Version, t.active)
			}
		}
		if known && len(rules) != len(cs.rules) {
			drift("chain %s has %d rules, want %d", cs.name, len(rules), len(cs.rules))
		}
	}
	if known && len(have) != len(specs) {
		drift("table has %d chains, want %d", len(have), len(specs))
	}
	if err := t.verifyIDS(c, drift); err != nil {
		return st, err
	}
	st.Counts = Counts{}
	for v := 0; v < 2; v++ {
		want := t.cur
		if v != t.active {
			want = t.standby
		}
		for name, s := range t.setDefs(v) {
			if v == 1 && s.Constant {
				continue
			}
			got, err := c.GetSetElements(s)
			if err != nil {
				if errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist) {
					drift("set %s is missing", s.Name)
					continue
				}
				return st, fmt.Errorf("nft: verify: set %s: %w", s.Name, err)
			}
			st.Counts[s.Name] = len(got)
			if want == nil { // unknown content (nothing applied, or the standby fill failed)
				continue
			}
			exp := want.elements(name)
			if len(got) != len(exp) {
				drift("set %s has %d elements, want %d", s.Name, len(got), len(exp))
				continue
			}
			if deep {
				if d := diffElements(exp, got); d != "" {
					drift("set %s: %s", s.Name, d)
				}
			}
		}
	}
	return st, nil
}

// jumpVersion finds which version's egress chain the forward chain jumps to.
func jumpVersion(rules []*nftables.Rule) int {
	for _, r := range rules {
		for _, e := range r.Exprs {
			if vd, ok := e.(*expr.Verdict); ok && vd.Kind == expr.VerdictJump {
				for v := 0; v < 2; v++ {
					if vd.Chain == vname(ChainEgress, v) {
						return v
					}
				}
			}
		}
	}
	return -1
}

func userdataComment(ud []byte) (string, bool) {
	// TLV: type 0 (comment), length, NUL-terminated string.
	for len(ud) >= 2 {
		typ, l := ud[0], int(ud[1])
		if len(ud) < 2+l {
			return "", false
		}
		if typ == 0 {
			s := ud[2 : 2+l]
			if n := len(s); n > 0 && s[n-1] == 0 {
				s = s[:n-1]
			}
			return string(s), true
		}
		ud = ud[2+l:]
	}
	return "", false
}

func diffElements(exp []elem, got []nftables.SetElement) string {
	type kv struct {
		end bool
		val string
	}
	want := make(map[string]kv, len(exp))
	for _, e := range exp {
		want[string(e.key)+fmt.Sprint(e.end)] = kv{e.end, string(e.val)}
	}
	for _, g := range got {
		k := string(g.Key) + fmt.Sprint(g.IntervalEnd)
		w, ok := want[k]
		if !ok {
			return fmt.Sprintf("unexpected element %x", g.Key)
		}
		if !w.end && w.val != string(g.Val) {
			return fmt.Sprintf("element %x maps to %x, want %x", g.Key, g.Val, w.val)
		}
	}
	return ""
}

// Remove deletes the table (if present) and forgets what was applied.
func (t *Table) Remove() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := t.conn(0)
	if err != nil {
		return err
	}
	tbl := t.table()
	c.AddTable(tbl) // so that deleting never fails for lack of a table
	c.DelTable(tbl)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nft: remove table %s: %w", t.cfg.Table, err)
	}
	t.cur, t.standby = nil, nil
	return t.removeIDS()
}

// CheckKernel installs a small table of the same shape under a scratch name
// (cfg.Table + "_probe") and removes it again, so an agent learns at start
// whether this kernel supports every feature the layout uses (interval maps
// with 28-byte keys, ct mark set from a map, byteorder, NFLOG, reject in
// inet forward) before it touches its real table. The probe table has no
// workload interfaces, so it decides nothing while it exists.
func CheckKernel(cfg Config) error {
	cfg = cfg.withDefaults()
	cfg.Table += "_probe"
	t, err := New(cfg)
	if err != nil {
		return err
	}
	v := Verdict{Rule: 1, Action: Allow}
	st := &HostState{
		EgressDefault: v, IngressDefault: v,
		Identities: []IdentityRange{
			{Lo: netip.MustParseAddr("192.0.2.0"), Hi: netip.MustParseAddr("192.0.2.255"), Identity: 1},
			{Lo: netip.MustParseAddr("2001:db8::"), Hi: netip.MustParseAddr("2001:db8::ffff"), Identity: 1},
		},
		Workloads: []Workload{{Name: "probe", Interface: "bhprobe0", Egress: []Entry{
			{Peer: 1, Proto: ProtoTCP, Ports: Ports(1, 2), Verdict: Verdict{Rule: 2, Action: Reject}},
			{Peer: AnyPeer, Proto: ProtoICMP, Ports: ICMPType(8), Verdict: Verdict{Rule: 3, Action: Drop}},
		}}},
	}
	// And the inspection table (xt NFQUEUE balanced, NFLOG, ct mark).
	st.IDS = &IDSState{Workloads: []IDSWorkload{
		{Name: "probe", Interface: "bhprobe0", Mode: IDSPrevent},
		{Name: "probe", Interface: "bhprobe1", Mode: IDSDetect},
	}}
	if _, err := t.ApplyFull(st); err != nil {
		t.Remove()
		return fmt.Errorf("nft: kernel check: %w", err)
	}
	st.Revision = 1
	st.Workloads[0].Egress = st.Workloads[0].Egress[:1]
	if _, err := t.ApplyIncremental(st); err != nil {
		t.Remove()
		return fmt.Errorf("nft: kernel check (incremental): %w", err)
	}
	if s, err := t.Verify(true); err != nil || len(s.Drift) > 0 {
		t.Remove()
		return fmt.Errorf("nft: kernel check: read back %+v: %w", s.Drift, err)
	}
	return t.Remove()
}
