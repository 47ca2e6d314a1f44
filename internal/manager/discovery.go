package manager

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/discover"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/flowstore"
	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/recommend"
)

// defaultWindow is how far back recommendation and discovery look when
// the caller does not say.
const defaultWindow = "7d"

// discoveryRoutes: recommendations and application discovery (issue 5).
func (s *Server) discoveryRoutes() []route {
	p := api.Prefix
	return []route{
		{method: "POST", path: p + "/recommend", role: api.RoleOperator,
			summary: "Draft a zero-trust policy for a scope from observed flows, with evidence and the changes to the existing one; apply it if asked",
			request: api.RecommendRequest{}, reply: api.RecommendResponse{}, handle: s.handleRecommend},
		{method: "GET", path: p + "/discover/apps", role: api.RoleAuditor,
			summary: "Proposed app and tier tags for workloads without them, from the flow graph (?since=)",
			reply:   []api.AppProposal{}, handle: s.handleDiscoverApps},
		{method: "POST", path: p + "/discover/apps/accept", role: api.RoleOperator,
			summary: "Write proposed tags into the inventory (only tags a workload lacks, only on workloads without app or tier)",
			request: api.AcceptAppsRequest{}, reply: api.AcceptAppsResponse{}, handle: s.handleAcceptApps},
	}
}

// parseWindow reads since/until: an RFC 3339 time, a Go duration back
// from now, or a number of days ("7d").
func parseWindow(name, v string, now time.Time) (time.Time, error) {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		if days, err := strconv.ParseUint(n, 10, 16); err == nil {
			return now.Add(-time.Duration(days) * 24 * time.Hour), nil
		}
	}
	t, err := parseSince(v, now)
	if err != nil {
		return time.Time{}, httpError(http.StatusBadRequest, fmt.Errorf("%s: %w (or a number of days, e.g. 7d)", name, err))
	}
	return t, nil
}

func (s *Server) handleRecommend(w http.ResponseWriter, r *http.Request) error {
	var req api.RecommendRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if s.flows == nil {
		return httpError(http.StatusServiceUnavailable, errors.New("recommend: flow store not open"))
	}
	if strings.TrimSpace(req.Scope) == "" {
		return httpError(http.StatusBadRequest, errors.New(`recommend: scope: want a tag expression, e.g. app == "shop", or all()`))
	}
	now := s.now()
	since, err := parseWindow("since", cmpOr(req.Since, defaultWindow), now)
	if err != nil {
		return err
	}
	until := now
	if req.Until != "" {
		if until, err = parseWindow("until", req.Until, now); err != nil {
			return err
		}
	}
	ctx := r.Context()
	base, err := s.store.Latest(ctx)
	if err != nil {
		return err
	}
	wls, err := s.store.Workloads(ctx)
	if err != nil {
		return err
	}
	o := req.Options
	opt := recommend.Options{
		Name: o.Name, EphemeralPort: o.EphemeralPort, RangeGap: o.RangeGap, RangeMinPorts: o.RangeMinPorts,
		MaxExternalAddrs: o.MaxExternalAddrs, Prune: req.Prune,
		// The flow store merges a connection's updates and end into one row.
		OneRecordPerConnection: true,
	}
	if req.Staged {
		opt.Mode = policy.ModeStaged
	}
	agg, err := recommend.NewAggregator(wls, req.Scope, opt)
	if err != nil {
		return httpError(http.StatusBadRequest, err)
	}
	// The window streams through the aggregator: no record is kept. A
	// first pass finds the scanners, whose connections get no rule.
	window := flowstore.Filter{Since: since, Until: until, NoMirrors: true}
	var scanners []recommend.Scanner
	if o.ScanThreshold >= 0 {
		det := recommend.NewScanDetector(o.ScanThreshold)
		if err := s.flows.Scan(ctx, window, func(rec *flow.Record) error { det.Add(rec); return nil }); err != nil {
			return fmt.Errorf("recommend: read flows: %w", err)
		}
		scanners = det.Scanners()
		for _, sc := range scanners {
			agg.ExcludeSources(sc.Addr)
		}
	}
	err = s.flows.Scan(ctx, window, func(rec *flow.Record) error {
		agg.Add(rec)
		return nil
	})
	if err != nil {
		return fmt.Errorf("recommend: read flows: %w", err)
	}
	d, err := agg.Draft(base.Set)
	if err != nil {
		return httpError(http.StatusBadRequest, err)
	}
	st := agg.Stats()
	resp := api.RecommendResponse{
		Evidence: map[string]api.RuleEvidence{}, Reused: d.Reused,
		Since: since, Until: until, Records: st.Records, Connections: st.Connections, Refused: st.Refused,
		Changes: api.RecommendChanges{Incremental: d.Changes.Incremental, Added: d.Changes.Added,
			Unchanged: d.Changes.Unchanged, Stale: d.Changes.Stale, Removed: d.Changes.Removed, Promoted: d.Changes.Promoted},
	}
	for _, sc := range scanners {
		as := api.Scanner{Address: sc.Addr.String(), Workload: agg.Workload(sc.Addr), Failed: sc.Failed, Targets: sc.Targets,
			Ports: sc.Ports, Connections: sc.Connections, First: sc.First, Last: sc.Last}
		for _, x := range sc.Examples {
			as.Examples = append(as.Examples, x.String())
		}
		resp.Scanners = append(resp.Scanners, as)
	}
	var docs []policy.Document
	for i, o := range d.Objects() {
		b, err := json.Marshal(o)
		if err != nil {
			return fmt.Errorf("recommend: encode %s: %w", o.GetHeader().Metadata.Name, err)
		}
		src := policy.Source{File: "recommendation", Index: i + 1}
		resp.Documents = append(resp.Documents, api.Document{Source: src, Object: b})
		docs = append(docs, policy.Document{Source: src, Object: o})
	}
	for name, ev := range d.Evidence {
		re := api.RuleEvidence{Flows: ev.Flows, Bytes: ev.Bytes, FirstSeen: ev.FirstSeen, LastSeen: ev.LastSeen}
		for _, x := range ev.Examples {
			re.Examples = append(re.Examples, x.String())
		}
		resp.Evidence[name] = re
	}
	if req.Apply {
		summary := fmt.Sprintf("recommend %s: %d rules added, %d removed, %d enforced", req.Scope, len(d.Changes.Added), len(d.Changes.Removed), len(d.Changes.Promoted))
		if req.Staged {
			summary += " (staged)"
		}
		resp.Revision, resp.Applied, err = s.applyDocuments(r, docs, summary, "recommend", false)
		if err != nil {
			return err
		}
		resp.Applied = nonNil(resp.Applied)
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// proposals computes discovery's proposals over the window starting at
// since. Records are copied without their ID: the flow store gives one row
// per connection, which is what Propose counts when IDs are empty.
func (s *Server) proposals(r *http.Request, since string) ([]*policy.Workload, []discover.Proposal, error) {
	if s.flows == nil {
		return nil, nil, httpError(http.StatusServiceUnavailable, errors.New("discover: flow store not open"))
	}
	from, err := parseWindow("since", cmpOr(since, defaultWindow), s.now())
	if err != nil {
		return nil, nil, err
	}
	ctx := r.Context()
	wls, err := s.store.Workloads(ctx)
	if err != nil {
		return nil, nil, err
	}
	var recs []flow.Record
	err = s.flows.Scan(ctx, flowstore.Filter{Since: from, Verdict: flow.Allow, NoMirrors: true}, func(rec *flow.Record) error {
		if rec.Kind == flow.KindDrop {
			return nil
		}
		c := *rec
		c.ID, c.Host = "", ""
		recs = append(recs, c)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("discover: read flows: %w", err)
	}
	return wls, discover.Propose(wls, recs, discover.Options{}), nil
}

func apiProposal(p discover.Proposal) api.AppProposal {
	out := api.AppProposal{
		Workload: p.Workload, Tags: p.Tags, Confidence: p.Confidence,
		Community: p.Community.ID, CommunityApp: p.Community.App, Members: p.Community.Members,
		AppFrom: p.Evidence.AppFrom, TierFrom: p.Evidence.TierFrom,
	}
	for _, port := range p.Evidence.Serves {
		out.Serves = append(out.Serves, port.String())
	}
	for _, peer := range p.Evidence.Peers {
		out.Peers = append(out.Peers, api.AppPeer{Workload: peer.Workload, App: peer.App, Tier: peer.Tier,
			Outbound: peer.Outbound, Ports: peer.Ports, Flows: peer.Flows, Bytes: peer.Bytes})
	}
	return out
}

func (s *Server) handleDiscoverApps(w http.ResponseWriter, r *http.Request) error {
	_, ps, err := s.proposals(r, r.URL.Query().Get(api.DiscoverSince))
	if err != nil {
		return err
	}
	out := make([]api.AppProposal, 0, len(ps))
	for _, p := range ps {
		out = append(out, apiProposal(p))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// untagged reports whether w has neither an app nor a tier tag: only such
// a workload takes discovery's tags, so an operator's tagging always wins.
func untagged(w *policy.Workload) bool {
	return w.Spec.Tags[discover.TagApp] == "" && w.Spec.Tags[discover.TagTier] == ""
}

func (s *Server) handleAcceptApps(w http.ResponseWriter, r *http.Request) error {
	var req api.AcceptAppsRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.All == (len(req.Workloads) > 0) {
		return httpError(http.StatusBadRequest, errors.New("accept: name workloads or ask for all, not both or neither"))
	}
	_, ps, err := s.proposals(r, req.Since)
	if err != nil {
		return err
	}
	byName := map[string]discover.Proposal{}
	for _, p := range ps {
		byName[p.Workload] = p
	}
	// The inventory is read again under the write lock: the tags written
	// are checked against what is there when they are written.
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	ctx := r.Context()
	base, err := s.store.Latest(ctx)
	if err != nil {
		return err
	}
	wls, err := s.store.Workloads(ctx)
	if err != nil {
		return err
	}
	old := workloadSet(wls)
	names := req.Workloads
	if req.All {
		names = slices.Sorted(maps.Keys(byName))
	}
	var resp api.AcceptAppsResponse
	var unknown []string
	var upserts []*policy.Workload
	next := old.Clone()
	for _, name := range names {
		cur, ok := old.Workloads[name]
		if !ok {
			unknown = append(unknown, name)
			continue
		}
		p, ok := byName[name]
		switch {
		case !ok:
			resp.Skipped = append(resp.Skipped, api.SkippedAccept{Workload: name, Reason: "no proposal: untagged workloads seen in no allowed flow of the window get none"})
			continue
		case !untagged(cur):
			resp.Skipped = append(resp.Skipped, api.SkippedAccept{Workload: name, Reason: "already has an app or tier tag"})
			continue
		}
		wl := cur.DeepCopy()
		if wl.Spec.Tags == nil {
			wl.Spec.Tags = map[string]string{}
		}
		written := map[string]string{}
		for k, v := range p.Tags {
			if _, has := wl.Spec.Tags[k]; !has {
				wl.Spec.Tags[k] = v
				written[k] = v
			}
		}
		if len(written) == 0 {
			resp.Skipped = append(resp.Skipped, api.SkippedAccept{Workload: name, Reason: "no tag to add"})
			continue
		}
		upserts = append(upserts, wl)
		next.Workloads[name] = wl
		ap := apiProposal(p)
		ap.Tags = written
		resp.Accepted = append(resp.Accepted, ap)
	}
	if len(unknown) > 0 {
		return httpError(http.StatusNotFound, fmt.Errorf("accept: no workload %s", strings.Join(unknown, ", ")))
	}
	c := &change{base: base, upserts: upserts, auditVerb: "discover.accept"}
	c.changes = policy.DiffSets(old, next)
	c.summary = summarize("discover accept", c.changes)
	rev, err := s.commit(r, c)
	if err != nil {
		return err
	}
	resp.Revision, resp.Changes = rev, nonNil(c.changes)
	if resp.Accepted == nil {
		resp.Accepted = []api.AppProposal{}
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}
