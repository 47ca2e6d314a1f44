package manager

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/ports"
	"github.com/bulkhead/bulkhead/internal/store"
)

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) handleWhoAmI(w http.ResponseWriter, r *http.Request) error {
	t := callerOf(r.Context())
	writeJSON(w, http.StatusOK, api.WhoAmI{Name: t.Name, Role: t.Role})
	return nil
}

// decodeDocuments turns wire documents into objects, collecting every error
// so that one answer lists all that is wrong.
func decodeDocuments(docs []api.Document) ([]policy.Document, policy.ErrorList) {
	var out []policy.Document
	var errs policy.ErrorList
	for i, d := range docs {
		src := d.Source
		if src.Index == 0 {
			src.Index = i + 1
		}
		obj, err := policy.DecodeObject(d.Object)
		if err != nil {
			errs = append(errs, fieldErrors(err, src)...)
			continue
		}
		doc := policy.Document{Source: src, Object: obj}
		if verrs := policy.ValidateObject(doc); len(verrs) > 0 {
			errs = append(errs, verrs...)
			continue
		}
		out = append(out, doc)
	}
	return out, errs
}

// fieldErrors attaches the document's source to decoding errors.
func fieldErrors(err error, src policy.Source) policy.ErrorList {
	var list policy.ErrorList
	var one *policy.FieldError
	switch {
	case errors.As(err, &list):
	case errors.As(err, &one):
		list = policy.ErrorList{one}
	default:
		list = policy.ErrorList{{Reason: err.Error()}}
	}
	for _, fe := range list {
		if fe.Source.File == "" {
			fe.Source.File = src.File
		}
		if fe.Source.Index == 0 {
			fe.Source.Index = src.Index
		}
		// The object arrived re-encoded as JSON: positions found decoding
		// it point into the request body, not the user's file. Name the
		// document's line instead; the CLI places the field exactly from
		// its own parse.
		fe.Line, fe.Column = src.Line, 0
		fe.Source.Line = src.Line
	}
	return list
}

func validationError(errs policy.ErrorList) error {
	he := &httpErr{code: http.StatusUnprocessableEntity, err: fmt.Errorf("%d validation error(s); nothing was applied:\n%s", len(errs), errs.Error())}
	for _, e := range errs {
		he.details = append(he.details, api.FieldError{
			File: e.Source.File, Index: e.Source.Index, Kind: string(e.Kind), Name: e.Name,
			Field: e.Field, Line: e.Line, Column: e.Column, Reason: e.Reason, Message: e.Error(),
		})
	}
	return he
}

// change is a computed, not yet committed, modification of the latest state.
type change struct {
	base      *store.Revision
	next      *policy.Set // nil when policy is unchanged
	upserts   []*policy.Workload
	deletes   []string
	changes   []policy.Change
	rollback  int64
	summary   string
	auditVerb string
}

func workloadSet(ws []*policy.Workload) *policy.Set {
	s := policy.NewSet()
	for _, w := range ws {
		s.Workloads[w.Metadata.Name] = w
	}
	return s
}

func (s *Server) handleApply(w http.ResponseWriter, r *http.Request) error {
	var req api.ApplyRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if len(req.Documents) == 0 {
		return httpError(http.StatusBadRequest, errors.New("apply: no documents"))
	}
	docs, errs := decodeDocuments(req.Documents)
	if len(errs) > 0 {
		return validationError(errs)
	}
	rev, changes, err := s.applyDocuments(r, docs, req.Summary, "apply", req.DryRun)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.ApplyResponse{Revision: rev, Changes: nonNil(changes), DryRun: req.DryRun})
	return nil
}

// applyDocuments merges decoded documents into the latest revision,
// validates the whole set and, unless dryRun, commits it as one revision
// with one audit entry per changed object (action verb). It returns the
// revision that holds the result (the latest one for a dry run or no
// change) and the changes.
func (s *Server) applyDocuments(r *http.Request, docs []policy.Document, summary, verb string, dryRun bool) (int64, []policy.Change, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	ctx := r.Context()
	base, err := s.store.Latest(ctx)
	if err != nil {
		return 0, nil, err
	}
	oldWls, err := s.store.Workloads(ctx)
	if err != nil {
		return 0, nil, err
	}
	next := base.Set.Clone()
	origin := map[policy.ObjectKey]policy.Source{}
	newWls := workloadSet(oldWls)
	var upserts []*policy.Workload
	var errs policy.ErrorList
	for _, d := range docs {
		h := d.Object.GetHeader()
		key := policy.ObjectKey{Kind: h.Kind, Name: h.Metadata.Name}
		if prev, dup := origin[key]; dup {
			errs = append(errs, &policy.FieldError{Source: d.Source, Kind: h.Kind, Name: h.Metadata.Name, Field: "metadata.name",
				Reason: fmt.Sprintf("%s %q is also defined in %s document %d", h.Kind, h.Metadata.Name, prev.File, prev.Index)})
			continue
		}
		origin[key] = d.Source
		if wl, ok := d.Object.(*policy.Workload); ok {
			upserts = append(upserts, wl)
			newWls.Workloads[h.Metadata.Name] = wl
			continue
		}
		next.Put(d.Object)
	}
	if len(errs) == 0 {
		errs = next.Validate(origin)
	}
	if len(errs) > 0 {
		return 0, nil, validationError(errs)
	}
	c := &change{base: base, next: next, upserts: upserts, summary: summary, auditVerb: verb}
	c.changes = append(policy.DiffSets(workloadSet(oldWls), newWls), policy.DiffSets(base.Set, next)...)
	if summary == "" {
		c.summary = summarize(verb, c.changes)
	}
	if dryRun {
		return base.Number, c.changes, nil
	}
	rev, err := s.commit(r, c)
	if err != nil {
		return 0, nil, err
	}
	return rev, c.changes, nil
}

func nonNil(c []policy.Change) []policy.Change {
	if c == nil {
		return []policy.Change{}
	}
	return c
}

func summarize(verb string, changes []policy.Change) string {
	if len(changes) == 0 {
		return verb + ": no change"
	}
	var parts []string
	for i, c := range changes {
		if i == 4 {
			parts = append(parts, fmt.Sprintf("and %d more", len(changes)-i))
			break
		}
		parts = append(parts, fmt.Sprintf("%s %s/%s", c.Op, c.Kind, c.Name))
	}
	return verb + ": " + strings.Join(parts, ", ")
}

// commit writes a computed change: a new revision when policy changed,
// inventory changes, and one audit entry per changed object, atomically.
func (s *Server) commit(r *http.Request, c *change) (int64, error) {
	ctx := r.Context()
	policyChanged := false
	for _, ch := range c.changes {
		if ch.Kind.Revisioned() {
			policyChanged = true
		}
	}
	if !policyChanged && c.rollback == 0 {
		c.next = nil
	}
	if c.next != nil {
		if err := s.assignRuleIDs(r, c.next); err != nil {
			return 0, err
		}
	}
	if c.next == nil && len(c.upserts) == 0 && len(c.deletes) == 0 {
		return c.base.Number, nil
	}
	actor := callerOf(ctx).Name
	var audit []store.AuditEntry
	for _, ch := range c.changes {
		audit = append(audit, store.AuditEntry{Actor: actor, Action: c.auditVerb, Object: string(ch.Kind) + "/" + ch.Name, Diff: ch.Diff})
	}
	if len(audit) == 0 {
		audit = append(audit, store.AuditEntry{Actor: actor, Action: c.auditVerb})
	}
	rev, err := s.store.Commit(ctx, store.Commit{
		Base: c.base.Number, Author: actor, Summary: c.summary, Set: c.next, Rollback: c.rollback,
		UpsertWorkloads: c.upserts, DeleteWorkloads: c.deletes, Audit: audit,
	})
	if err != nil {
		return 0, err
	}
	if c.next != nil {
		s.metrics.revisions.Inc()
		s.metrics.latestRevision.Set(float64(rev))
	}
	s.agents.Changed()
	return rev, nil
}

// assignRuleIDs gives new rules ids reserved in the store, so that an id is
// never reused even across rollbacks.
func (s *Server) assignRuleIDs(r *http.Request, set *policy.Set) error {
	missing := 0
	for _, p := range set.Policies {
		for _, rule := range p.Spec.Rules {
			if _, ok := set.RuleIDs[policy.RuleKey(p.Metadata.Name, rule.Name)]; !ok {
				missing++
			}
		}
	}
	var first uint32
	if missing > 0 {
		var err error
		if first, err = s.store.NextRuleIDs(r.Context(), missing); err != nil {
			return err
		}
	}
	next := first
	set.AssignRuleIDs(func() uint32 { id := next; next++; return id })
	return nil
}

func kindOf(r *http.Request) (policy.Kind, error) {
	k, err := api.ParseKind(r.PathValue("kind"))
	if err != nil {
		return "", httpError(http.StatusNotFound, err)
	}
	return k, nil
}

// revisionFor loads ?revision=N, or the latest.
func (s *Server) revisionFor(r *http.Request) (*store.Revision, error) {
	if v := r.URL.Query().Get("revision"); v != "" && v != "0" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, httpError(http.StatusBadRequest, fmt.Errorf("revision %q: not a number", v))
		}
		return s.store.Revision(r.Context(), n)
	}
	return s.store.Latest(r.Context())
}

func (s *Server) objects(r *http.Request, kind policy.Kind) ([]policy.Object, error) {
	if kind == policy.KindWorkload {
		wls, err := s.store.Workloads(r.Context())
		if err != nil {
			return nil, err
		}
		out := make([]policy.Object, len(wls))
		for i, w := range wls {
			out[i] = w
		}
		return out, nil
	}
	rev, err := s.revisionFor(r)
	if err != nil {
		return nil, err
	}
	return rev.Set.Objects(kind), nil
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) error {
	kind, err := kindOf(r)
	if err != nil {
		return err
	}
	objs, err := s.objects(r, kind)
	if err != nil {
		return err
	}
	if objs == nil {
		objs = []policy.Object{}
	}
	writeJSON(w, http.StatusOK, objs)
	return nil
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) error {
	kind, err := kindOf(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	objs, err := s.objects(r, kind)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if o.GetHeader().Metadata.Name == name {
			writeJSON(w, http.StatusOK, o)
			return nil
		}
	}
	return httpError(http.StatusNotFound, fmt.Errorf("%s %q not found", kind, name))
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) error {
	kind, err := kindOf(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if kind == policy.KindDefaultRule {
		return httpError(http.StatusBadRequest, errors.New("the default rule cannot be deleted; apply one with another action"))
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	ctx := r.Context()
	base, err := s.store.Latest(ctx)
	if err != nil {
		return err
	}
	c := &change{base: base, auditVerb: "delete"}
	if kind == policy.KindWorkload {
		wls, err := s.store.Workloads(ctx)
		if err != nil {
			return err
		}
		old := workloadSet(wls)
		if _, ok := old.Workloads[name]; !ok {
			return httpError(http.StatusNotFound, fmt.Errorf("Workload %q not found", name))
		}
		nw := old.Clone()
		nw.Delete(kind, name)
		c.deletes = []string{name}
		c.changes = policy.DiffSets(old, nw)
	} else {
		next := base.Set.Clone()
		if !next.Delete(kind, name) {
			return httpError(http.StatusNotFound, fmt.Errorf("%s %q not found", kind, name))
		}
		if errs := next.Validate(nil); len(errs) > 0 {
			return validationError(errs)
		}
		c.next = next
		c.changes = policy.DiffSets(base.Set, next)
	}
	c.summary = summarize("delete", c.changes)
	rev, err := s.commit(r, c)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.DeleteResponse{Revision: rev, Changes: nonNil(c.changes)})
	return nil
}

func revisionInfo(ri store.RevisionInfo) api.Revision {
	return api.Revision{Number: ri.Number, Author: ri.Author, Time: ri.Time, Summary: ri.Summary, Rollback: ri.Rollback}
}

func (s *Server) handleRevisions(w http.ResponseWriter, r *http.Request) error {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return httpError(http.StatusBadRequest, fmt.Errorf("limit %q: want a positive number", v))
		}
		limit = n
	}
	revs, err := s.store.Revisions(r.Context(), limit)
	if err != nil {
		return err
	}
	out := make([]api.Revision, len(revs))
	for i, ri := range revs {
		out[i] = revisionInfo(ri)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func pathRevision(r *http.Request) (int64, error) {
	v := r.PathValue("number")
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, httpError(http.StatusBadRequest, fmt.Errorf("revision %q: not a revision number", v))
	}
	return n, nil
}

func (s *Server) loadRevision(r *http.Request, n int64) (*store.Revision, error) {
	if n == 0 {
		return &store.Revision{Set: policy.NewSet()}, nil
	}
	rev, err := s.store.Revision(r.Context(), n)
	if errors.Is(err, store.ErrNotFound) {
		return nil, httpError(http.StatusNotFound, fmt.Errorf("revision %d not found", n))
	}
	return rev, err
}

func (s *Server) handleRevision(w http.ResponseWriter, r *http.Request) error {
	n, err := pathRevision(r)
	if err != nil {
		return err
	}
	rev, err := s.loadRevision(r, n)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.RevisionDetail{
		Revision: api.Revision{Number: rev.Number, Author: rev.Author, Time: rev.Time, Summary: rev.Summary},
		Set:      rev.Set,
	})
	return nil
}

func (s *Server) handleRevisionDiff(w http.ResponseWriter, r *http.Request) error {
	to, err := pathRevision(r)
	if err != nil {
		return err
	}
	from := to - 1
	if v := r.URL.Query().Get("from"); v != "" {
		if from, err = strconv.ParseInt(v, 10, 64); err != nil || from < 0 {
			return httpError(http.StatusBadRequest, fmt.Errorf("from %q: not a revision number", v))
		}
	}
	if from < 0 {
		from = 0
	}
	a, err := s.loadRevision(r, from)
	if err != nil {
		return err
	}
	b, err := s.loadRevision(r, to)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.DiffResponse{From: from, To: to, Changes: nonNil(policy.DiffSets(a.Set, b.Set))})
	return nil
}

func (s *Server) handleRollback(w http.ResponseWriter, r *http.Request) error {
	var req api.RollbackRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	target, err := s.loadRevision(r, req.Revision)
	if err != nil {
		return err
	}
	base, err := s.store.Latest(r.Context())
	if err != nil {
		return err
	}
	next := target.Set.Clone()
	// Ids of rules that exist in both stay the same; every id ever given
	// is kept in the map's history through the store's counter.
	for k, id := range base.Set.RuleIDs {
		if _, ok := next.RuleIDs[k]; !ok {
			next.RuleIDs[k] = id
		}
	}
	if errs := next.Validate(nil); len(errs) > 0 {
		return validationError(errs)
	}
	c := &change{base: base, next: next, rollback: req.Revision, auditVerb: "rollback",
		summary: fmt.Sprintf("rollback to revision %d", req.Revision)}
	c.changes = policy.DiffSets(base.Set, next)
	rev, err := s.commit(r, c)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.ApplyResponse{Revision: rev, Changes: nonNil(c.changes)})
	return nil
}

// ParseFlow turns an eval request into a flow, with errors that name the
// field.
func ParseFlow(req api.EvalRequest) (eval.Flow, error) {
	f := eval.Flow{ICMPType: -1, ICMPCode: -1, App: req.App, TLSVersion: req.TLSVersion, User: req.User, FQDN: req.FQDN}
	var err error
	if f.Src, err = netip.ParseAddr(req.From); err != nil {
		return f, fmt.Errorf("from: %q is not an IP address", req.From)
	}
	if f.Dst, err = netip.ParseAddr(req.To); err != nil {
		return f, fmt.Errorf("to: %q is not an IP address", req.To)
	}
	if f.Src.Is4() != f.Dst.Is4() {
		return f, errors.New("from and to: mixed IPv4 and IPv6")
	}
	proto := req.Proto
	if proto == "" {
		proto = "tcp"
	}
	spec, err := ports.Parse(proto)
	if err != nil || spec.Proto == 0 {
		return f, fmt.Errorf("proto: %q is not a protocol (tcp, udp, icmp, icmpv6, sctp or a number)", req.Proto)
	}
	f.Proto = spec.Proto
	switch f.Proto {
	case ports.ICMP, ports.ICMPv6:
		if req.ICMPType != nil {
			f.ICMPType = int16(*req.ICMPType)
		}
		if req.ICMPCode != nil {
			f.ICMPCode = int16(*req.ICMPCode)
		}
	default:
		if req.Port < 0 || req.Port > 65535 {
			return f, fmt.Errorf("port: %d out of range 0-65535", req.Port)
		}
		f.Port = uint16(req.Port)
	}
	return f, nil
}

func (s *Server) handleEval(w http.ResponseWriter, r *http.Request) error {
	var req api.EvalRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	flow, err := ParseFlow(req)
	if err != nil {
		return httpError(http.StatusBadRequest, fmt.Errorf("eval: %w", err))
	}
	ev, rev, err := s.evals.get(r.Context(), req.Revision)
	if err != nil {
		return err
	}
	d := ev.Evaluate(flow)
	writeJSON(w, http.StatusOK, evalResponse(rev, d))
	return nil
}

func evalResponse(rev int64, d eval.Decision) api.EvalResponse {
	out := api.EvalResponse{
		Revision: rev, Verdict: string(d.Verdict), RuleID: d.RuleID, Rule: d.Rule, Enforced: d.Enforced,
		StagedVerdict: string(d.StagedVerdict), StagedRuleID: d.StagedRuleID, StagedRule: d.StagedRule,
		Points: []api.EvalPoint{},
	}
	for _, p := range d.Points {
		out.Points = append(out.Points, api.EvalPoint{
			Workload: p.Workload, Direction: string(p.Direction), Action: string(p.Action), RuleID: p.RuleID, Rule: p.Rule,
			StagedAction: string(p.StagedAction), StagedRuleID: p.StagedRuleID, StagedRule: p.StagedRule,
		})
	}
	return out
}

// parseSince accepts an RFC 3339 time or a duration back from now ("10m").
func parseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("since %q: want RFC 3339 time or a duration like 10m", v)
	}
	return t, nil
}

func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	since, err := parseSince(q.Get("since"), s.now())
	if err != nil {
		return httpError(http.StatusBadRequest, err)
	}
	f := store.AuditFilter{Since: since, Actor: q.Get("actor"), Object: q.Get("object"), Limit: 1000}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return httpError(http.StatusBadRequest, fmt.Errorf("limit %q: want a positive number", v))
		}
		f.Limit = n
	}
	entries, err := s.store.AuditLog(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]api.AuditEntry, len(entries))
	for i, e := range entries {
		out[i] = api.AuditEntry{ID: e.ID, Time: e.Time, Actor: e.Actor, Action: e.Action, Object: e.Object, Revision: e.Revision, Diff: e.Diff}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func apiToken(t store.Token) api.Token {
	out := api.Token{ID: t.ID, Name: t.Name, Role: t.Role, Created: t.Created}
	if !t.Expires.IsZero() {
		e := t.Expires
		out.Expires = &e
	}
	return out
}

func (s *Server) handleTokens(w http.ResponseWriter, r *http.Request) error {
	toks, err := s.store.Tokens(r.Context())
	if err != nil {
		return err
	}
	out := make([]api.Token, len(toks))
	for i, t := range toks {
		out[i] = apiToken(t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request) error {
	var req api.TokenRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if api.RoleRank(req.Role) == 0 {
		return httpError(http.StatusBadRequest, fmt.Errorf("role %q: want admin, operator or auditor", req.Role))
	}
	if req.Name == "" {
		return httpError(http.StatusBadRequest, errors.New("name: must not be empty"))
	}
	var ttl time.Duration
	if req.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 {
			return httpError(http.StatusBadRequest, fmt.Errorf("ttl %q: want a positive duration like 24h", req.TTL))
		}
	}
	secret, tok, err := s.store.CreateToken(r.Context(), req.Name, req.Role, ttl)
	if err != nil {
		return err
	}
	s.auditOnly(r, "token.create", "Token/"+tok.Name, fmt.Sprintf("role %s, id %s", tok.Role, tok.ID))
	writeJSON(w, http.StatusCreated, api.TokenCreated{Token: apiToken(tok), Secret: secret})
	return nil
}

func (s *Server) handleDeleteToken(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := s.store.DeleteToken(r.Context(), id); err != nil {
		return err
	}
	s.auditOnly(r, "token.delete", "Token/"+id, "")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// auditOnly records a change that is not policy or inventory.
func (s *Server) auditOnly(r *http.Request, action, object, diff string) {
	// A commit without a Set is never checked against a base revision, so
	// there is no need to load the latest (large) revision or to queue
	// behind policy writers.
	actor := callerOf(r.Context()).Name
	_, err := s.store.Commit(r.Context(), store.Commit{Author: actor,
		Audit: []store.AuditEntry{{Actor: actor, Action: action, Object: object, Diff: diff}}})
	if err != nil {
		s.log.Error("audit write failed", "action", action, "object", object, "err", err)
	}
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, s.openAPI())
	return nil
}
