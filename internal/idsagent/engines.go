package idsagent

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bulkhead/bulkhead/internal/ids"
	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/nft"
)

// engineSet is what the readers inspect with: per inspected interface, its
// workload and engine. Immutable once stored.
type engineSet struct {
	version string
	byIface map[string]*slot
	rules   int // signatures over all distinct engines
	engines int
}

// slot is one inspected workload interface.
type slot struct {
	w       nft.IDSWorkload
	engine  *ids.Engine
	profile string // the IDSProfile names, comma-separated
}

// builder compiles engine sets in the background, one state at a time; a
// newer state supersedes a build in progress.
type builder struct {
	r *Reader

	// buildMu serializes builds (and guards the reused parts below); mu
	// guards gen and waiters.
	buildMu sync.Mutex
	mu      sync.Mutex
	gen     uint64
	waiters []waiter
	// Reused across builds: the last state's parsed rules (by the hash
	// of its vars and rule text) and its engines (by rules hash and sid
	// sets).
	rulesHash [32]byte
	bySID     map[uint32]*rules.Rule
	nProblems int
	engines   map[string]*ids.Engine
}

type waiter struct {
	gen uint64
	ch  chan struct{}
}

// SetState has the reader inspect with st (nil: nothing) from when its
// engines are compiled, in the background; the returned channel is closed
// then (or when a newer state supersedes st). Inspection never stops
// meanwhile: the previous engines serve, and flows keep their state
// across the swap.
func (r *Reader) SetState(st *nft.IDSState) <-chan struct{} {
	b := &r.builder
	ch := make(chan struct{})
	b.mu.Lock()
	b.gen++
	gen := b.gen
	b.waiters = append(b.waiters, waiter{gen, ch})
	b.mu.Unlock()
	r.forgetIfNames() // interfaces may have come and gone with the state
	go b.build(gen, st)
	return ch
}

// current reports whether gen is still the newest state.
func (b *builder) current(gen uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gen == gen
}

func (b *builder) build(gen uint64, st *nft.IDSState) {
	b.buildMu.Lock()
	defer b.buildMu.Unlock()
	start := time.Now()
	if !b.current(gen) {
		return
	}
	set, err := b.compile(gen, st)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gen != gen {
		return // superseded; its waiter is released by the newer build
	}
	r := b.r
	if err != nil {
		// Keep inspecting with what serves: better old signatures than
		// none.
		r.errs.Add(1)
		r.log.Error("IDS: signature set not used; the previous one stays", "version", versionOf(st), "err", err)
	} else {
		r.set.Store(set)
		r.swaps.Add(1)
		r.log.Info("IDS engines in service", "version", set.version, "workloads", len(set.byIface),
			"engines", set.engines, "rules", set.rules, "problems", b.nProblems, "took", time.Since(start).Round(time.Millisecond))
	}
	keep := b.waiters[:0]
	for _, w := range b.waiters {
		if w.gen <= gen {
			close(w.ch)
		} else {
			keep = append(keep, w)
		}
	}
	b.waiters = keep
}

func versionOf(st *nft.IDSState) string {
	if st == nil {
		return ""
	}
	return st.Version
}

// compile builds the engine set of st, reusing the previous build's parsed
// rules and engines where their input is the same. It gives up (nil, nil
// error never) when a newer state arrives.
func (b *builder) compile(gen uint64, st *nft.IDSState) (*engineSet, error) {
	set := &engineSet{version: versionOf(st), byIface: map[string]*slot{}}
	if st == nil || len(st.Workloads) == 0 {
		return set, nil
	}
	h := rulesHash(st)
	if b.bySID == nil || h != b.rulesHash {
		vars, err := rules.VarsFromMap(st.Vars)
		if err != nil {
			return nil, fmt.Errorf("idsagent: signature set %s: variables: %w", st.Version, err)
		}
		rs, probs := rules.Read(strings.NewReader(strings.Join(st.Rules, "\n")), "signature set "+st.Version, vars)
		for i, p := range probs {
			if i == 5 {
				b.r.log.Warn("IDS: more rules not loaded", "count", len(probs)-i)
				break
			}
			b.r.log.Warn("IDS: rule not loaded", "sid", p.SID, "reason", p.Reason)
		}
		bySID := make(map[uint32]*rules.Rule, len(rs))
		for _, r := range rs {
			bySID[r.SID] = r
		}
		b.rulesHash, b.bySID, b.nProblems, b.engines = h, bySID, len(probs), map[string]*ids.Engine{}
		b.r.problems.Store(uint64(len(probs)))
	}
	engines := map[string]*ids.Engine{}
	for _, w := range st.Workloads {
		k := engineKey(w)
		e := engines[k]
		if e == nil {
			e = b.engines[k]
		}
		if e == nil {
			if !b.current(gen) {
				return nil, fmt.Errorf("idsagent: superseded")
			}
			var probs []rules.Problem
			e, probs = ids.Compile(selectRules(b.bySID, w))
			for i, p := range probs {
				if i == 5 {
					break
				}
				b.r.log.Warn("IDS: rule not compiled", "sid", p.SID, "reason", p.Reason, "workload", w.Name)
			}
		}
		if engines[k] == nil {
			engines[k] = e
			set.rules += e.Len()
		}
		set.byIface[w.Interface] = &slot{w: w, engine: e, profile: strings.Join(w.Profiles, ",")}
	}
	b.engines = engines
	set.engines = len(engines)
	return set, nil
}

// selectRules returns the rules of w's sids with the action enforced
// there: a drop or reject rule whose sid is not a prevent sid is a copy
// that only alerts; an alert rule whose sid is a block (reject) sid is a
// copy that drops (rejects). The sid lists are sorted (span checks).
func selectRules(bySID map[uint32]*rules.Rule, w nft.IDSWorkload) []*rules.Rule {
	in := func(l []uint32, sid uint32) bool { _, ok := slices.BinarySearch(l, sid); return ok }
	out := make([]*rules.Rule, 0, len(w.SIDs))
	for _, sid := range w.SIDs {
		r := bySID[sid]
		if r == nil {
			continue // not loaded: reported with the rules' problems
		}
		action := r.Action
		switch {
		case (r.Action == rules.ActionDrop || r.Action == rules.ActionReject) && !in(w.PreventSIDs, sid):
			action = rules.ActionAlert
		case r.Action == rules.ActionAlert && in(w.BlockSIDs, sid):
			action = rules.ActionDrop
		case r.Action == rules.ActionAlert && in(w.RejectSIDs, sid):
			action = rules.ActionReject
		}
		if action != r.Action {
			c := *r
			c.Action = action
			r = &c
		}
		out = append(out, r)
	}
	return out
}

func rulesHash(st *nft.IDSState) [32]byte {
	h := sha256.New()
	keys := make([]string, 0, len(st.Vars))
	for k := range st.Vars {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\x00", k, st.Vars[k])
	}
	h.Write([]byte{0xff})
	for _, r := range st.Rules {
		h.Write([]byte(r))
		h.Write([]byte{0})
	}
	return [32]byte(h.Sum(nil))
}

// engineKey names what an engine is compiled from, the workload's SIDs,
// PreventSIDs, BlockSIDs and RejectSIDs: workloads with equal lists share
// one engine.
func engineKey(w nft.IDSWorkload) string {
	lists := [][]uint32{w.SIDs, w.PreventSIDs, w.BlockSIDs, w.RejectSIDs}
	n := len(lists)
	for _, l := range lists {
		n += len(l)
	}
	b := make([]byte, 0, 4*n)
	for _, l := range lists {
		for _, s := range l {
			b = binary.BigEndian.AppendUint32(b, s)
		}
		b = binary.BigEndian.AppendUint32(b, 0) // sid 0 is no rule's
	}
	return string(b)
}
