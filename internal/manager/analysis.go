package manager

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead/bulkhead/internal/analysis"
	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/flowstore"
	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/tagexpr"
)

// analysisRoutes: the map, compliance and what-if (issue 5).
func (s *Server) analysisRoutes() []route {
	p := api.Prefix
	return []route{
		{method: "GET", path: p + "/map", role: api.RoleAuditor,
			summary: "The application map: nodes and edges at a level, with compliance against the latest revision (?level=env|app|tier|workload&since=&until=&scope=)",
			reply:   api.MapResponse{}, handle: s.handleMap},
		{method: "GET", path: p + "/compliance", role: api.RoleAuditor,
			summary: "Flows classified green/amber/red/dashed against a revision, per node and edge (?level=&since=&until=&revision=)",
			reply:   api.ComplianceResponse{}, handle: s.handleCompliance},
		{method: "POST", path: p + "/whatif", role: api.RoleAuditor,
			summary: "Replay stored flows against a draft or a revision: what it would drop or newly allow",
			request: api.WhatIfRequest{}, reply: api.WhatIfResponse{}, handle: s.handleWhatIf},
	}
}

// Limits of a what-if answer's examples.
const (
	whatIfExamples    = 20
	whatIfMaxExamples = 1000
)

// draftRuleBase starts the provisional ids given to a draft's new rules:
// far above any id the store hands out, and never shown (the answer says
// 0 for them).
const draftRuleBase = 1 << 31

// parseAgo is parseSince that also takes days ("7d"): analyses look back
// over the flow retention, a week.
func parseAgo(v string, now time.Time) (time.Time, error) {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days >= 0 {
			return now.Add(-time.Duration(days) * 24 * time.Hour), nil
		}
	}
	return parseSince(v, now)
}

// analysisWindow reads since and until into a flow filter.
func analysisWindow(since, until string, now time.Time) (flowstore.Filter, error) {
	// A connection between two hosts counts once.
	f := flowstore.Filter{NoMirrors: true}
	var err error
	if f.Since, err = parseAgo(since, now); err != nil {
		return f, err
	}
	if until != "" {
		if f.Until, err = parseAgo(until, now); err != nil {
			return f, fmt.Errorf("until: %w", err)
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return f, fmt.Errorf("until %s is before since %s", f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
	}
	return f, nil
}

func window(f flowstore.Filter) api.Window { return api.Window{Since: f.Since, Until: f.Until} }

// analyze reads every record of the window into an analyzer over the
// current inventory.
func (s *Server) analyze(ctx context.Context, f flowstore.Filter, opts analysis.Options) (*analysis.Analyzer, error) {
	if s.flows == nil {
		return nil, httpError(http.StatusServiceUnavailable, errors.New("flow store not open"))
	}
	wls, err := s.store.Workloads(ctx)
	if err != nil {
		return nil, err
	}
	a, err := analysis.New(wls, opts)
	if err != nil {
		return nil, err
	}
	err = s.flows.Scan(ctx, f, func(r *flow.Record) error {
		a.Add(r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("analysis: read flows: %w", err)
	}
	return a, nil
}

func (s *Server) handleMap(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	level, err := analysis.ParseLevel(q.Get(api.AnalysisLevel))
	if err != nil {
		return httpError(http.StatusBadRequest, err)
	}
	f, err := analysisWindow(q.Get(api.AnalysisSince), q.Get(api.AnalysisUntil), s.now())
	if err != nil {
		return httpError(http.StatusBadRequest, err)
	}
	var scope tagexpr.Expr
	if v := q.Get(api.AnalysisScope); v != "" {
		if scope, err = tagexpr.Parse(v); err != nil {
			return httpError(http.StatusBadRequest, fmt.Errorf("scope %q: %w", v, err))
		}
	}
	ev, rev, err := s.evals.get(r.Context(), 0)
	if err != nil {
		return err
	}
	a, err := s.analyze(r.Context(), f, analysis.Options{Eval: ev})
	if err != nil {
		return err
	}
	m := a.Map(level, scope)
	if err := s.mapAlerts(r.Context(), a, m, f, scope); err != nil { // ids_alerts.go
		return err
	}
	out := api.MapResponse{Level: level.String(), Window: window(f), Revision: rev,
		Nodes: make([]api.MapNode, len(m.Nodes)), Edges: make([]api.MapEdge, len(m.Edges)), Total: apiTraffic(m.Total), Alerts: m.Alerts}
	if scope != nil {
		out.Scope = scope.String()
	}
	for i, n := range m.Nodes {
		out.Nodes[i] = api.MapNode{ID: n.ID, Level: n.Level.String(), Env: n.Env, App: n.App, Tier: n.Tier, Workload: n.Workload,
			External: n.External, Range: n.Range, Members: n.Members, Proposed: n.Proposed, Traffic: apiTraffic(n.Traffic), Alerts: n.Alerts}
		if n.Addr.IsValid() {
			out.Nodes[i].Address = n.Addr.String()
		}
	}
	for i, e := range m.Edges {
		me := api.MapEdge{From: e.From, To: e.To, Traffic: apiTraffic(e.Traffic), Services: []api.MapService{}, Alerts: e.Alerts}
		for j, svc := range e.Services {
			if j == api.MaxEdgeServices {
				me.MoreServices = len(e.Services) - j
				break
			}
			me.Services = append(me.Services, api.MapService{Service: svc.String(), Connections: svc.Connections, Drops: svc.Drops})
		}
		for _, u := range e.Users[:min(len(e.Users), api.MaxEdgeServices)] {
			me.Users = append(me.Users, api.MapUser{User: u.User, Connections: u.Connections})
		}
		out.Edges[i] = me
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func apiCounts(c analysis.Counts) api.ComplianceCounts {
	return api.ComplianceCounts{Green: c.Green, Amber: c.Amber, Red: c.Red, Dashed: c.Dashed, Total: c.Total()}
}

func apiTraffic(t analysis.Traffic) api.Traffic {
	out := api.Traffic{Connections: t.Connections, Drops: t.Drops, DroppedPackets: t.DroppedPackets,
		BytesSent: t.Sent, BytesReceived: t.Received, Packets: t.Packets, FirstSeen: t.First, LastSeen: t.Last}
	c := apiCounts(t.Classes)
	out.Compliance = &c
	return out
}

func (s *Server) handleCompliance(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	level, err := analysis.ParseLevel(q.Get(api.AnalysisLevel))
	if err != nil {
		return httpError(http.StatusBadRequest, err)
	}
	f, err := analysisWindow(q.Get(api.AnalysisSince), q.Get(api.AnalysisUntil), s.now())
	if err != nil {
		return httpError(http.StatusBadRequest, err)
	}
	var n int64
	if v := q.Get(api.AnalysisRevision); v != "" {
		if n, err = strconv.ParseInt(v, 10, 64); err != nil || n < 0 {
			return httpError(http.StatusBadRequest, fmt.Errorf("revision %q: not a revision number", v))
		}
	}
	ev, rev, err := s.evals.get(r.Context(), n)
	if err != nil {
		return err
	}
	a, err := s.analyze(r.Context(), f, analysis.Options{Eval: ev})
	if err != nil {
		return err
	}
	m := a.Map(level, nil)
	out := api.ComplianceResponse{Level: level.String(), Window: window(f), Revision: rev,
		Nodes: make([]api.ComplianceRow, len(m.Nodes)), Edges: make([]api.ComplianceRow, len(m.Edges)), Total: apiCounts(m.Total.Classes)}
	for i, n := range m.Nodes {
		out.Nodes[i] = api.ComplianceRow{Node: n.ID, Counts: apiCounts(n.Traffic.Classes), Proposed: n.Proposed}
	}
	for i, e := range m.Edges {
		out.Edges[i] = api.ComplianceRow{From: e.From, To: e.To, Counts: apiCounts(e.Classes)}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleWhatIf(w http.ResponseWriter, r *http.Request) error {
	var req api.WhatIfRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	switch {
	case len(req.Documents) > 0 && req.Revision != 0:
		return httpError(http.StatusBadRequest, errors.New("whatif: documents or revision, not both"))
	case len(req.Documents) == 0 && req.Revision <= 0:
		return httpError(http.StatusBadRequest, errors.New("whatif: want documents (a draft) or a revision number to replay against"))
	}
	level, err := analysis.ParseLevel(req.Level)
	if err != nil {
		return httpError(http.StatusBadRequest, fmt.Errorf("whatif: %w", err))
	}
	limit := req.Limit
	if limit == 0 {
		limit = whatIfExamples
	}
	if limit < 0 || limit > whatIfMaxExamples {
		return httpError(http.StatusBadRequest, fmt.Errorf("whatif: limit %d: want 1-%d", req.Limit, whatIfMaxExamples))
	}
	f, err := analysisWindow(req.Since, req.Until, s.now())
	if err != nil {
		return httpError(http.StatusBadRequest, fmt.Errorf("whatif: %w", err))
	}
	ctx := r.Context()
	cur, base, err := s.evals.get(ctx, 0)
	if err != nil {
		return err
	}
	var cand *eval.Evaluator
	name := "draft"
	if req.Revision != 0 {
		name = fmt.Sprintf("revision %d", req.Revision)
		if cand, _, err = s.evals.get(ctx, req.Revision); err != nil {
			return err
		}
	} else if cand, err = s.draftEvaluator(ctx, req.Documents); err != nil {
		return err
	}
	a, err := s.analyze(ctx, f, analysis.Options{Eval: cur, Candidate: cand})
	if err != nil {
		return err
	}
	wi := a.WhatIf(level, limit)
	out := api.WhatIfResponse{Baseline: base, Candidate: name, Level: level.String(), Window: window(f),
		Records: wi.Total.Records(), WouldDrop: wi.Total.WouldDrop, WouldAllow: wi.Total.WouldAllow, Changed: wi.Changed,
		Edges: make([]api.WhatIfEdge, len(wi.Edges)), Examples: make([]api.WhatIfExample, len(wi.Examples))}
	for i, e := range wi.Edges {
		out.Edges[i] = api.WhatIfEdge{From: e.From, To: e.To, WouldDrop: e.WouldDrop, WouldAllow: e.WouldAllow}
	}
	for i, x := range wi.Examples {
		change := "allow"
		if x.WouldDrop() {
			change = "drop"
		}
		out.Examples[i] = api.WhatIfExample{Change: change, Src: x.Src.String(), Dst: x.Dst.String(),
			SrcWorkload: x.SrcWorkload, DstWorkload: x.DstWorkload, From: x.SrcNode, To: x.DstNode,
			Service: x.Service.String(), Flows: x.Flows, Bytes: x.Bytes, LastSeen: x.Last,
			Before: apiOutcome(x.Before), After: apiOutcome(x.After)}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func apiOutcome(o analysis.Outcome) api.WhatIfOutcome {
	out := api.WhatIfOutcome{Verdict: string(o.Verdict), RuleID: o.RuleID, Rule: o.Rule}
	if o.RuleID >= draftRuleBase {
		out.RuleID = 0
	}
	return out
}

// draftEvaluator compiles the latest revision with a draft merged in, as
// apply would merge it, without writing anything or spending rule ids.
func (s *Server) draftEvaluator(ctx context.Context, wire []api.Document) (*eval.Evaluator, error) {
	docs, errs := decodeDocuments(wire)
	if len(errs) > 0 {
		return nil, validationError(errs)
	}
	base, err := s.store.Latest(ctx)
	if err != nil {
		return nil, err
	}
	wls, err := s.store.Workloads(ctx)
	if err != nil {
		return nil, err
	}
	next := base.Set.Clone()
	draftWls := workloadSet(wls)
	origin := map[policy.ObjectKey]policy.Source{}
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
			draftWls.Workloads[h.Metadata.Name] = wl
			continue
		}
		next.Put(d.Object)
	}
	if len(errs) == 0 {
		errs = next.Validate(origin)
	}
	if len(errs) > 0 {
		return nil, validationError(errs)
	}
	id := uint32(draftRuleBase)
	next.AssignRuleIDs(func() uint32 { id++; return id - 1 })
	for name, wl := range draftWls.Workloads {
		next.Workloads[name] = wl
	}
	ev, err := eval.Compile(next)
	if err != nil {
		return nil, httpError(http.StatusUnprocessableEntity, fmt.Errorf("whatif: compile the draft: %w", err))
	}
	return ev, nil
}
