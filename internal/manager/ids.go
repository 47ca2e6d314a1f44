package manager

// The IDS side of the manager (issue 8): imported signature sets, kept
// parsed in memory (once per version and variables); the IDS part of each
// host's desired state, from the IDSProfiles of the latest revision and
// what the inventory says the workloads run (ids_select.go); and a summary
// of what each workload served lately, read from the flow store at most
// once a minute by a background loop, never per request.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/flowstore"
	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/nft"
	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/span"
	"github.com/bulkhead/bulkhead/internal/store"
)

const (
	// maxRuleFile bounds an imported rule file once decompressed (ET Open
	// is about 30 MB).
	maxRuleFile = 256 << 20
	// servedWindow is how far back flow records say what a workload
	// serves; servedEvery how often the summary is read again;
	// servedMaxRecords bounds one read, servedMaxPorts the ports kept per
	// workload (beyond, its ports are not used to filter).
	servedWindow     = 24 * time.Hour
	servedEvery      = time.Minute
	servedMaxRecords = 2_000_000
	servedMaxPorts   = 256
)

// idsRoutes: signature sets and the per-workload selection.
func (s *Server) idsRoutes() []route {
	p := api.Prefix + "/ids"
	return []route{
		{method: "POST", path: p + "/signature-sets/{name}", role: api.RoleOperator,
			summary: "Import a rule file (Suricata language; the body, plain or gzip) as a new version of a signature set",
			reply:   api.IDSImportResult{}, handle: s.handleIDSImport},
		{method: "GET", path: p + "/signature-sets", role: api.RoleAuditor,
			summary: "Imported signature sets, newest version of each", reply: []api.IDSSignatureSet{}, handle: s.handleIDSSets},
		{method: "GET", path: p + "/signature-sets/{name}", role: api.RoleAuditor,
			summary: "One signature set: its newest version, what loaded and every rule that did not, with line, sid and reason",
			reply:   api.IDSImportResult{}, handle: s.handleIDSSet},
		{method: "DELETE", path: p + "/signature-sets/{name}", role: api.RoleOperator,
			summary: "Delete a signature set", handle: s.handleIDSDeleteSet},
		{method: "GET", path: p + "/signatures", role: api.RoleAuditor,
			summary: "Signatures (?set=&sid=), or those inspecting a workload with profile, mode and what was left out (?workload=)",
			reply:   api.IDSSignatures{}, handle: s.handleIDSSignatures},
	}
}

// idsState is the manager's IDS state.
type idsState struct {
	// writeMu orders imports and deletes, so the catalog follows the
	// store's versions; it is not the policy write lock, which a parse of
	// a large file would hold too long.
	writeMu sync.Mutex

	mu sync.Mutex
	// The parsed sets, for the variables of varsKey.
	loaded  bool
	varsKey string
	cat     *idsCatalog

	servedMu  sync.Mutex
	served    map[string]*servedInfo
	servedVer int64
	servedSum uint64

	cacheMu sync.Mutex
	cache   *idsHostCache
}

func newIDSState() *idsState { return &idsState{} }

// idsCatalog is one immutable generation of the parsed signature sets.
type idsCatalog struct {
	gen  int64
	sets []*idsSet // by name
	// sigs are every usable signature, by sid, one per sid: the set first
	// by name wins; shadowed counts the others per set.
	sigs     []*idsSig
	bySID    map[uint32]*idsSig
	shadowed map[string]int
}

type idsSet struct {
	info     store.SignatureSet
	rules    []*rules.Rule
	problems []rules.Problem
}

func newCatalog(gen int64, sets []*idsSet) *idsCatalog {
	c := &idsCatalog{gen: gen, sets: sets, bySID: map[uint32]*idsSig{}, shadowed: map[string]int{}}
	slices.SortFunc(c.sets, func(a, b *idsSet) int { return strings.Compare(a.info.Name, b.info.Name) })
	for _, set := range c.sets {
		label := fmt.Sprintf("%s@%d", set.info.Name, set.info.Version)
		for _, r := range set.rules {
			if _, dup := c.bySID[r.SID]; dup {
				c.shadowed[set.info.Name]++
				continue
			}
			sig := newIDSSig(r, set.info.Name, label)
			c.bySID[r.SID] = sig
			c.sigs = append(c.sigs, sig)
		}
	}
	slices.SortFunc(c.sigs, func(a, b *idsSig) int { return cmpU32(a.rule.SID, b.rule.SID) })
	return c
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type servedInfo struct {
	ports []servedPort
	many  bool // more than servedMaxPorts: ports say nothing
}

func varsKey(v *rules.Vars) string {
	b, _ := json.Marshal(v.Map()) // maps marshal sorted
	return string(b)
}

// sigStore returns the store's signature set side.
func (s *Server) sigStore() (store.SignatureSetStore, error) {
	ss, ok := s.store.(store.SignatureSetStore)
	if !ok {
		return nil, httpError(http.StatusNotImplemented, errors.New("ids: this store keeps no signature sets"))
	}
	return ss, nil
}

// catalog returns the parsed sets for the variables vars, loading them
// from the store on first use and parsing them again when the variables
// changed.
func (s *Server) idsCatalog(ctx context.Context, vars *rules.Vars) (*idsCatalog, error) {
	key := varsKey(vars)
	st := s.ids
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.loaded && st.varsKey == key {
		return st.cat, nil
	}
	ss, err := s.sigStore()
	if err != nil {
		return nil, err
	}
	infos, err := ss.SignatureSets(ctx)
	if err != nil {
		return nil, err
	}
	var sets []*idsSet
	for _, info := range infos {
		text, err := ss.SignatureSetText(ctx, info.Name, info.Version)
		if err != nil {
			return nil, err
		}
		rs, probs := rules.Read(bytes.NewReader(text), info.Name, vars)
		sets = append(sets, &idsSet{info: info, rules: rs, problems: probs})
	}
	gen := int64(1)
	if st.cat != nil {
		gen = st.cat.gen + 1
	}
	st.cat, st.loaded, st.varsKey = newCatalog(gen, sets), true, key
	return st.cat, nil
}

// replaceSet puts (or, with set nil, removes) a set in the catalog after
// the store changed, if the catalog is loaded for vars.
func (s *Server) idsReplaceSet(name string, set *idsSet, vars *rules.Vars) {
	st := s.ids
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.loaded || st.varsKey != varsKey(vars) {
		st.loaded = false // the next use loads from the store
		return
	}
	var sets []*idsSet
	for _, x := range st.cat.sets {
		if x.info.Name != name {
			sets = append(sets, x)
		}
	}
	if set != nil {
		sets = append(sets, set)
	}
	st.cat = newCatalog(st.cat.gen+1, sets)
}

// latestIDSVars returns the variables of the latest revision.
func (s *Server) latestIDSVars(ctx context.Context) (*rules.Vars, error) {
	e, err := s.evals.entry(ctx, 0)
	if err != nil {
		return nil, err
	}
	return e.set.IDSVars()
}

var setName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9._]{0,61}[a-z0-9])?$`)

// readRuleFile reads an import's body, gunzipping it when it says so or
// starts with the gzip magic.
func readRuleFile(r *http.Request) ([]byte, error) {
	br := bufio.NewReader(http.MaxBytesReader(nil, r.Body, maxRuleFile))
	var in io.Reader = br
	magic, _ := br.Peek(2)
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") || bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, httpError(http.StatusBadRequest, fmt.Errorf("rule file: gzip: %w", err))
		}
		defer zr.Close()
		in = io.LimitReader(zr, maxRuleFile+1)
	}
	text, err := io.ReadAll(in)
	if err != nil {
		return nil, httpError(http.StatusBadRequest, fmt.Errorf("rule file: %w", err))
	}
	if len(text) > maxRuleFile {
		return nil, httpError(http.StatusRequestEntityTooLarge, fmt.Errorf("rule file: more than %d MiB once decompressed", maxRuleFile>>20))
	}
	return text, nil
}

func (s *Server) handleIDSImport(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if !setName.MatchString(name) {
		return httpError(http.StatusBadRequest, fmt.Errorf("signature set name %q: use lowercase letters, digits, - . _ (at most 63), starting and ending with a letter or digit", name))
	}
	ss, err := s.sigStore()
	if err != nil {
		return err
	}
	s.ids.writeMu.Lock()
	defer s.ids.writeMu.Unlock()
	text, err := readRuleFile(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	vars, err := s.latestIDSVars(ctx)
	if err != nil {
		return err
	}
	// The same file again is no new version: states do not change.
	cat, err := s.idsCatalog(ctx, vars)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(text)
	for _, set := range cat.sets {
		if set.info.Name == name && set.info.SHA256 == hex.EncodeToString(sum[:]) {
			out := importResult(name, set.rules, set.problems)
			out.Version, out.SHA256 = set.info.Version, set.info.SHA256
			writeJSON(w, http.StatusOK, out)
			return nil
		}
	}
	start := time.Now()
	rs, probs := rules.Read(bytes.NewReader(text), name, vars)
	out := importResult(name, rs, probs)
	if len(rs) == 0 {
		he := &httpErr{code: http.StatusBadRequest, err: fmt.Errorf("signature set %s: no rule loaded (%d problems)", name, len(probs))}
		for i, p := range probs {
			if i == 20 {
				break
			}
			he.details = append(he.details, api.FieldError{Field: fmt.Sprintf("line %d", p.Line), Reason: problemText(p)})
		}
		return he
	}
	caller := callerOf(ctx).Name
	diff := fmt.Sprintf("%d rules loaded, %d problems, %d bytes", len(rs), len(probs), len(text))
	info, err := ss.PutSignatureSet(ctx, store.SignatureSet{Name: name, Author: caller, Rules: len(rs), Problems: len(probs)}, text,
		[]store.AuditEntry{{Actor: caller, Action: "ids.import", Object: "SignatureSet/" + name, Diff: diff}})
	if err != nil {
		return err
	}
	out.Version, out.SHA256 = info.Version, info.SHA256
	s.idsReplaceSet(name, &idsSet{info: info, rules: rs, problems: probs}, vars)
	s.log.Info("ids signature set imported", "set", name, "version", info.Version, "rules", len(rs), "problems", len(probs),
		"took", time.Since(start).Round(time.Millisecond), "by", caller)
	s.agents.Changed()
	writeJSON(w, http.StatusOK, out)
	return nil
}

func importResult(name string, rs []*rules.Rule, probs []rules.Problem) api.IDSImportResult {
	out := api.IDSImportResult{Name: name, Loaded: len(rs)}
	for _, p := range probs {
		out.Problems = append(out.Problems, api.IDSProblem{Line: p.Line, SID: p.SID, Reason: p.Reason, Keyword: p.Keyword})
		if p.Keyword != "" {
			out.ByKeyword = idsMapPut(out.ByKeyword, p.Keyword, out.ByKeyword[p.Keyword]+1)
		}
	}
	return out
}

func problemText(p rules.Problem) string {
	if p.SID != 0 {
		return fmt.Sprintf("sid %d: %s", p.SID, p.Reason)
	}
	return p.Reason
}

func (s *Server) handleIDSSets(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	vars, err := s.latestIDSVars(ctx)
	if err != nil {
		return err
	}
	cat, err := s.idsCatalog(ctx, vars)
	if err != nil {
		return err
	}
	out := []api.IDSSignatureSet{}
	for _, set := range cat.sets {
		i := set.info
		out = append(out, api.IDSSignatureSet{Name: i.Name, Version: i.Version, Rules: len(set.rules), Problems: len(set.problems),
			Created: i.Created, Author: i.Author, SHA256: i.SHA256, Shadowed: cat.shadowed[i.Name]})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleIDSSet(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name := r.PathValue("name")
	vars, err := s.latestIDSVars(ctx)
	if err != nil {
		return err
	}
	cat, err := s.idsCatalog(ctx, vars)
	if err != nil {
		return err
	}
	for _, set := range cat.sets {
		if set.info.Name == name {
			out := importResult(name, set.rules, set.problems)
			out.Version, out.SHA256 = set.info.Version, set.info.SHA256
			writeJSON(w, http.StatusOK, out)
			return nil
		}
	}
	return httpError(http.StatusNotFound, fmt.Errorf("signature set %q not found", name))
}

func (s *Server) handleIDSDeleteSet(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	ss, err := s.sigStore()
	if err != nil {
		return err
	}
	s.ids.writeMu.Lock()
	defer s.ids.writeMu.Unlock()
	ctx := r.Context()
	caller := callerOf(ctx).Name
	if err := ss.DeleteSignatureSet(ctx, name, []store.AuditEntry{{Actor: caller, Action: "ids.delete", Object: "SignatureSet/" + name}}); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return httpError(http.StatusNotFound, fmt.Errorf("signature set %q not found", name))
		}
		return err
	}
	vars, err := s.latestIDSVars(ctx)
	if err != nil {
		return err
	}
	s.idsReplaceSet(name, nil, vars)
	s.agents.Changed()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// idsHostCache holds what one (revision, inventory, catalog, served
// summary) gives every host: compiled profiles and the states computed.
type idsHostCache struct {
	entry     *evalEntry
	gen       int64
	servedVer int64

	cat      *idsCatalog
	vars     map[string]string
	profiles []*idsProfile
	hosts    map[string]*nft.IDSState
	// choices memoizes selection by workload key and applying profiles:
	// a tier's workloads usually share both (cacheMu).
	choices map[string]idsChoice
}

// idsHosts returns the cache for the latest revision, building it when any
// of its inputs changed. ok is false when no IDSProfile exists.
func (s *Server) idsHosts(ctx context.Context) (*idsHostCache, bool, error) {
	e, err := s.evals.entry(ctx, 0)
	if err != nil {
		return nil, false, err
	}
	if len(e.set.IDSProfiles) == 0 {
		return nil, false, nil
	}
	vars, err := e.set.IDSVars()
	if err != nil {
		return nil, false, err
	}
	cat, err := s.idsCatalog(ctx, vars)
	if err != nil {
		return nil, false, err
	}
	st := s.ids
	st.servedMu.Lock()
	servedVer := st.servedVer
	st.servedMu.Unlock()
	st.cacheMu.Lock()
	defer st.cacheMu.Unlock()
	if c := st.cache; c != nil && c.entry == e && c.gen == cat.gen && c.servedVer == servedVer {
		return c, true, nil
	}
	c := &idsHostCache{entry: e, gen: cat.gen, servedVer: servedVer, cat: cat, vars: vars.Map(), hosts: map[string]*nft.IDSState{},
		choices: map[string]idsChoice{}}
	members := map[string]map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(e.set.IDSProfiles)) {
		pr := e.set.IDSProfiles[name]
		p := &idsProfile{name: name, prevent: pr.Spec.Mode == policy.IDSModePrevent, aware: pr.Spec.IsWorkloadAware(),
			filter: compileFilter(pr.Spec.Signatures)}
		if p.prevent {
			p.enforce = preventAction(pr.Spec.EnforcedPreventAction())
		}
		if len(pr.Spec.AppliedTo) > 0 {
			p.members = map[string]bool{}
			for _, g := range pr.Spec.AppliedTo {
				m, ok := members[g]
				if !ok {
					m = map[string]bool{}
					if gm, found := e.eval.Members(g); found {
						for _, wm := range gm.Workloads {
							m[wm.Name] = true
						}
					}
					members[g] = m
				}
				maps.Copy(p.members, m)
			}
		}
		p.prefilter(cat.sigs)
		c.profiles = append(c.profiles, p)
	}
	st.cache = c
	return c, true, nil
}

// choose is selectSignatures, memoized by what selection reads.
func (c *idsHostCache) choose(w *idsWorkload, mu *sync.Mutex) idsChoice {
	var key strings.Builder
	key.WriteString(w.key())
	for _, p := range c.profiles {
		if p.appliesTo(w.Name) {
			key.WriteString("|" + p.name)
		}
	}
	mu.Lock()
	ch, ok := c.choices[key.String()]
	mu.Unlock()
	if ok {
		return ch
	}
	ch = selectSignatures(w, c.profiles, false)
	mu.Lock()
	c.choices[key.String()] = ch
	mu.Unlock()
	return ch
}

// facts returns what selection knows of a workload.
func (s *Server) idsFacts(w *policy.Workload) *idsWorkload {
	s.ids.servedMu.Lock()
	info := s.ids.served[w.Metadata.Name]
	s.ids.servedMu.Unlock()
	var ports []servedPort
	many := false
	if info != nil {
		ports, many = info.ports, info.many
	}
	f := workloadFacts(w, ports)
	if many {
		f.Served = nil // too many to say which it serves
		f.rolesFrom += " (too many served ports to filter by port)"
	}
	return f
}

// hostIDS computes the IDS part of a host's state at the latest revision:
// nil when no IDSProfile applies to any of its workloads.
func (s *Server) hostIDS(ctx context.Context, host string) (*nft.IDSState, error) {
	c, ok, err := s.idsHosts(ctx)
	if err != nil || !ok {
		return nil, err
	}
	s.ids.cacheMu.Lock()
	st, done := c.hosts[host]
	s.ids.cacheMu.Unlock()
	if done {
		return st, nil
	}
	var sels []span.IDSSelection
	for _, name := range slices.Sorted(maps.Keys(c.entry.set.Workloads)) {
		w := c.entry.set.Workloads[name]
		if w == nil || w.Spec.Host != host || w.Spec.Interface == "" {
			continue
		}
		ch := c.choose(s.idsFacts(w), &s.ids.cacheMu)
		if len(ch.Profiles) == 0 {
			continue
		}
		sels = append(sels, span.IDSSelection{Workload: name, Interface: w.Spec.Interface, Mode: ch.Mode, Profiles: ch.Profiles,
			SIDs: ch.SIDs, PreventSIDs: ch.Prevent, BlockSIDs: ch.Block, RejectSIDs: ch.Reject})
	}
	st, err = span.IDS(c.vars, sels, func(sid uint32) (span.IDSSignature, bool) {
		sig := c.cat.bySID[sid]
		if sig == nil {
			return span.IDSSignature{}, false
		}
		return span.IDSSignature{Text: sig.rule.Raw, Set: sig.label}, true
	})
	if err != nil {
		return nil, fmt.Errorf("ids: host %s: %w", host, err)
	}
	s.ids.cacheMu.Lock()
	c.hosts[host] = st
	s.ids.cacheMu.Unlock()
	return st, nil
}

// preventAction is the rule action an IDSProfile's preventAction enforces
// alert signatures with; 0 for asWritten.
func preventAction(a string) rules.Action {
	switch a {
	case policy.IDSPreventDrop:
		return rules.ActionDrop
	case policy.IDSPreventReject:
		return rules.ActionReject
	}
	return 0
}

// enforcedAction is what a match of signature sid (written with action a)
// does to the workload's traffic: "drop" or "reject" when it blocks, ""
// when it only alerts (or passes).
func enforcedAction(a rules.Action, sid uint32, ch *idsChoice) string {
	in := func(l []uint32) bool { _, ok := slices.BinarySearch(l, sid); return ok }
	if !in(ch.Prevent) {
		return ""
	}
	switch {
	case a == rules.ActionDrop, a == rules.ActionAlert && in(ch.Block):
		return api.IDSEnforcedDrop
	case a == rules.ActionReject, a == rules.ActionAlert && in(ch.Reject):
		return api.IDSEnforcedReject
	}
	return ""
}

func apiSignature(sig *idsSig) api.IDSSignature {
	r := sig.rule
	return api.IDSSignature{SID: r.SID, Rev: r.Rev, Set: sig.set, Msg: r.Msg, Action: ruleActionName(r.Action), Proto: ruleProtoName(r.Proto),
		Classtype: r.Classtype, Priority: r.Priority}
}

func (s *Server) handleIDSSignatures(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var sid uint32
	if v := q.Get(api.IDSSignaturesSID); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return httpError(http.StatusBadRequest, fmt.Errorf("%s %q: not a signature id", api.IDSSignaturesSID, v))
		}
		sid = uint32(n)
	}
	set := q.Get(api.IDSSignaturesSet)
	keep := func(sig *idsSig) bool {
		return (set == "" || sig.set == set) && (sid == 0 || sig.rule.SID == sid)
	}
	ctx := r.Context()
	out := api.IDSSignatures{Signatures: []api.IDSSignature{}}
	wname := q.Get(api.IDSSignaturesWorkload)
	if wname == "" {
		vars, err := s.latestIDSVars(ctx)
		if err != nil {
			return err
		}
		cat, err := s.idsCatalog(ctx, vars)
		if err != nil {
			return err
		}
		for _, sig := range cat.sigs {
			if keep(sig) {
				a := apiSignature(sig)
				if sid != 0 {
					a.Rule = sig.rule.Raw
				}
				out.Signatures = append(out.Signatures, a)
			}
		}
		if sid != 0 && len(out.Signatures) == 0 {
			return httpError(http.StatusNotFound, fmt.Errorf("no imported signature has sid %d", sid))
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	e, err := s.evals.entry(ctx, 0)
	if err != nil {
		return err
	}
	wl := e.set.Workloads[wname]
	if wl == nil {
		return httpError(http.StatusNotFound, fmt.Errorf("workload %q not found", wname))
	}
	out.Workload, out.Host, out.Interface = wname, wl.Spec.Host, wl.Spec.Interface
	facts := s.idsFacts(wl)
	out.Facts = &api.IDSWorkloadFacts{OS: facts.OS, RolesFrom: facts.rolesFrom, RolesKnown: facts.RolesKnown}
	for role := range facts.Roles {
		out.Facts.Roles = append(out.Facts.Roles, role)
	}
	sort.Strings(out.Facts.Roles)
	if facts.Served != nil {
		out.Facts.Served = strings.Split(servedList(&idsWorkload{Served: facts.Served}), ",")
	}
	c, ok, err := s.idsHosts(ctx)
	if err != nil {
		return err
	}
	if !ok {
		out.Why = append(out.Why, "no IDSProfile exists")
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	ch := selectSignatures(facts, c.profiles, true)
	if len(ch.Profiles) > 0 {
		out.Mode, out.Profiles = ch.Mode, ch.Profiles
	}
	prevent := map[uint32]bool{}
	for _, p := range ch.Prevent {
		prevent[p] = true
	}
	for _, id := range ch.SIDs {
		sig := c.cat.bySID[id]
		if sig == nil || !keep(sig) {
			continue
		}
		a := apiSignature(sig)
		a.Profiles, a.Prevent = ch.By[id], prevent[id]
		a.Enforced = enforcedAction(sig.rule.Action, id, &ch)
		if sid != 0 {
			a.Rule = sig.rule.Raw
		}
		out.Signatures = append(out.Signatures, a)
	}
	for _, id := range slices.Sorted(maps.Keys(ch.Left)) {
		sig := c.cat.bySID[id]
		if sig == nil || !keep(sig) {
			continue
		}
		for _, l := range ch.Left[id] {
			out.LeftOut = append(out.LeftOut, api.IDSLeftOut{SID: id, Msg: sig.rule.Msg, Profile: l.Profile, Reason: l.Reason})
		}
	}
	if sid != 0 {
		out.Why = s.idsWhy(c, facts, sid)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// idsWhy says what each profile decided about one signature for one
// workload.
func (s *Server) idsWhy(c *idsHostCache, w *idsWorkload, sid uint32) []string {
	sig := c.cat.bySID[sid]
	if sig == nil {
		return []string{fmt.Sprintf("no imported signature has sid %d", sid)}
	}
	var out []string
	if len(c.profiles) == 0 {
		return []string{"no IDSProfile exists"}
	}
	for _, p := range c.profiles {
		if !p.appliesTo(w.Name) {
			out = append(out, fmt.Sprintf("%s: does not apply to the workload (appliedTo)", p.name))
			continue
		}
		why, forced := p.filter.reason(sig)
		switch {
		case why != "":
			out = append(out, fmt.Sprintf("%s: left out by its filter: %s", p.name, why))
		case forced:
			out = append(out, fmt.Sprintf("%s: chosen by sid", p.name))
		case !p.aware:
			out = append(out, fmt.Sprintf("%s: chosen (workloadAware: false)", p.name))
		default:
			if aw := awareReason(sig, w); aw != "" {
				out = append(out, fmt.Sprintf("%s: left out for this workload: %s", p.name, aw))
			} else {
				out = append(out, fmt.Sprintf("%s: chosen", p.name))
			}
		}
	}
	return out
}

// refreshServed reads what each workload served over the last
// servedWindow from the flow store: the destination ports of allowed,
// answered connections, named by the evaluator when the record does not
// name the workload. It reports whether the summary changed.
func (s *Server) refreshServed(ctx context.Context) (bool, error) {
	if s.flows == nil {
		return false, nil
	}
	e, err := s.evals.entry(ctx, 0)
	if err != nil {
		return false, err
	}
	seen := map[string]map[servedPort]bool{}
	n := 0
	errEnough := errors.New("enough")
	err = s.flows.Scan(ctx, flowstore.Filter{Since: s.now().Add(-servedWindow), Verdict: flow.Allow}, func(rec *flow.Record) error {
		if n++; n > servedMaxRecords {
			return errEnough
		}
		if rec.Kind == flow.KindDrop || (rec.Proto != 6 && rec.Proto != 17) || rec.DstPackets == 0 {
			return nil
		}
		name := rec.DstWorkload
		if name == "" {
			name, _ = e.eval.WorkloadOf(rec.Dst)
		}
		if name == "" {
			return nil
		}
		m := seen[name]
		if m == nil {
			m = map[servedPort]bool{}
			seen[name] = m
		}
		if len(m) <= servedMaxPorts {
			m[servedPort{Proto: rec.Proto, Port: rec.DstPort, App: rec.App}] = true
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return false, fmt.Errorf("ids: served summary: %w", err)
	}
	if errors.Is(err, errEnough) {
		s.log.Warn("ids: served summary read only the first records of the window", "records", servedMaxRecords)
	}
	summary := map[string]*servedInfo{}
	h := fnv.New64a()
	for _, name := range slices.Sorted(maps.Keys(seen)) {
		ports := slices.SortedFunc(maps.Keys(seen[name]), func(a, b servedPort) int {
			if a.Proto != b.Proto {
				return int(a.Proto) - int(b.Proto)
			}
			if a.Port != b.Port {
				return int(a.Port) - int(b.Port)
			}
			return strings.Compare(a.App, b.App)
		})
		info := &servedInfo{ports: ports, many: len(ports) > servedMaxPorts}
		summary[name] = info
		fmt.Fprintf(h, "%s %v %v\n", name, info.many, ports)
	}
	sum := h.Sum64()
	st := s.ids
	st.servedMu.Lock()
	defer st.servedMu.Unlock()
	if sum == st.servedSum && st.served != nil {
		return false, nil
	}
	st.served, st.servedSum = summary, sum
	st.servedVer++
	return true, nil
}

// startIDS runs the served-summary loop: every servedEvery, and when what
// the workloads serve changed, the agents get their states again (the
// control plane sends only those whose bytes changed).
func (s *Server) startIDS(ctx context.Context, bg *sync.WaitGroup) {
	bg.Add(1)
	go func() {
		defer bg.Done()
		// Parse the sets now rather than on the first agent's state.
		if vars, err := s.latestIDSVars(ctx); err != nil {
			s.log.Warn("ids: load signature sets", "err", err)
		} else if _, err := s.idsCatalog(ctx, vars); err != nil && ctx.Err() == nil {
			s.log.Warn("ids: load signature sets", "err", err)
		}
		t := time.NewTicker(servedEvery)
		defer t.Stop()
		for {
			changed, err := s.refreshServed(ctx)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("ids: served summary", "err", err)
			}
			if changed {
				s.agents.Changed()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}
