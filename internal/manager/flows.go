package manager

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/flowstore"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// Flow retention: a week, and at most 50M records (about 10 GB of SQLite).
const (
	flowMaxAge     = 7 * 24 * time.Hour
	flowMaxRows    = 50_000_000
	flowPruneEvery = time.Minute
)

// openFlows opens the flow store, flows.db in the data directory: a file of
// its own, so that flow ingest never holds the lock policy writes need. It
// does nothing if the store is open.
func (s *Server) openFlows() error {
	if s.flows != nil {
		return nil
	}
	fs, err := flowstore.OpenSQLite(filepath.Join(s.cfg.DataDir, flowstore.FileName),
		flowstore.WithRetention(flowstore.Retention{MaxAge: flowMaxAge, MaxRows: flowMaxRows}, flowPruneEvery),
		flowstore.WithLogger(s.log))
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	s.flows = fs
	return nil
}

// closeFlows closes the flow store if it is open.
func (s *Server) closeFlows() error {
	if s.flows == nil {
		return nil
	}
	err := s.flows.Close()
	s.flows = nil
	return err
}

// IngestFlows stores a batch of records that host sent; the control plane
// calls it with the host its client certificate names. Records are put in
// that host's name, so that no host can write over another's flows.
func (s *Server) IngestFlows(ctx context.Context, host string, recs []flow.Record) error {
	prefix := host + "/"
	for i := range recs {
		r := &recs[i]
		r.Host = host
		if !strings.HasPrefix(r.ID, prefix) {
			r.ID = prefix + r.ID
		}
	}
	return s.storeFlowsFrom(ctx, s.flows, host, host, recs)
}

// markMirrors marks the records of agentHost that another agent host
// reports as primary. A connection's primary host is the agent host of
// its source workload, else of its destination workload. Every agent host
// a connection crosses reports it; the records of the others are mirrors,
// kept for the flow list and skipped by the analyses, so that a connection
// between two hosts counts once. A host that stops reporting (its agent
// is down) leaves only mirrors of its connections until it comes back:
// they are not promoted.
func (s *Server) markMirrors(ctx context.Context, e *evalEntry, agentHost string, recs []flow.Record) {
	agents := s.agentHostSet(ctx)
	hostOf := func(a netip.Addr) string {
		name, ok := e.eval.WorkloadOf(a)
		if !ok {
			return ""
		}
		w := e.set.Workloads[name]
		if w == nil || !agents[w.Spec.Host] {
			return ""
		}
		return w.Spec.Host
	}
	for i := range recs {
		r := &recs[i]
		p := hostOf(r.Src)
		if p == "" {
			p = hostOf(r.Dst)
		}
		r.Mirror = p != "" && p != agentHost
	}
}

// agentHostSet is the enrolled, unrevoked agent hosts, read from the store
// at most every 10 seconds.
func (s *Server) agentHostSet(ctx context.Context) map[string]bool {
	s.agentHostsMu.Lock()
	defer s.agentHostsMu.Unlock()
	if s.agentHosts != nil && s.now().Sub(s.agentHostsAt) < 10*time.Second {
		return s.agentHosts
	}
	hosts, err := s.store.Hosts(ctx)
	if err != nil {
		s.log.Warn("flows: list agent hosts", "err", err)
		return s.agentHosts
	}
	m := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		if h.Revoked.IsZero() {
			m[h.Name] = true
		}
	}
	s.agentHosts, s.agentHostsAt = m, s.now()
	return m
}

// storeFlows names both ends of each record from the inventory and its
// user from the login sessions, computes its staged rule, and stores the batch in fs (the server's flow store;
// background writers pass the one they started with). Agent flows and
// flows imported from outside (IPFIX, Zeek) take this one path; their Host
// and ID are set by the caller, and source names them in errors and logs.
func (s *Server) storeFlows(ctx context.Context, fs flowstore.Store, source string, recs []flow.Record) error {
	return s.storeFlowsFrom(ctx, fs, source, "", recs)
}

// storeFlowsFrom is storeFlows for the records of an agent host (""
// for records from outside), whose mirrors it marks. One evaluator lookup
// serves the whole batch.
func (s *Server) storeFlowsFrom(ctx context.Context, fs flowstore.Store, source, agentHost string, recs []flow.Record) error {
	if fs == nil {
		return fmt.Errorf("manager: ingest flows from %s: flow store not open", source)
	}
	// An agent only knows its own workloads, an exporter none; the
	// inventory names the other end, so a cross-host flow is found by
	// either workload's name.
	var ev *eval.Evaluator
	e, err := s.evals.entry(ctx, 0)
	if err != nil {
		s.log.Warn("flows: no inventory to name workloads", "source", source, "err", err)
	} else {
		ev = e.eval
		if agentHost != "" {
			s.markMirrors(ctx, e, agentHost, recs)
		}
	}
	if ev != nil {
		for i := range recs {
			r := &recs[i]
			if r.SrcWorkload == "" {
				r.SrcWorkload, _ = ev.WorkloadOf(r.Src)
			}
			if r.DstWorkload == "" {
				r.DstWorkload, _ = ev.WorkloadOf(r.Dst)
			}
		}
	}
	// The user first: the staged rule may be decided by it.
	s.nameUsers(ctx, recs)
	if ev != nil {
		d := eval.Decision{Points: make([]eval.Point, 0, 2)}
		for i := range recs {
			recs[i].StagedRuleID = stagedRule(ev, &recs[i], &d)
		}
	}
	if err := fs.Ingest(ctx, recs); err != nil {
		return fmt.Errorf("manager: ingest %d flows from %s: %w", len(recs), source, err)
	}
	return nil
}

// protoNames are the protocols flows are shown and filtered by name.
var protoNames = map[uint8]string{1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}

func protoName(p uint8) string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return strconv.Itoa(int(p))
}

func parseProto(v string) (uint8, error) {
	for p, n := range protoNames {
		if strings.EqualFold(v, n) {
			return p, nil
		}
	}
	n, err := strconv.ParseUint(v, 10, 8)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("proto %q: want tcp, udp, icmp, icmpv6, sctp or a protocol number", v)
	}
	return uint8(n), nil
}

// flowFilter reads GET /flows query parameters.
func flowFilter(r *http.Request, now time.Time) (flowstore.Filter, error) {
	q := r.URL.Query()
	var f flowstore.Filter
	var err error
	for _, ep := range []struct {
		param string
		dst   *flowstore.Endpoint
	}{{api.FlowFrom, &f.From}, {api.FlowTo, &f.To}} {
		if *ep.dst, err = flowstore.ParseEndpoint(q.Get(ep.param)); err != nil {
			return f, fmt.Errorf("%s: %w", ep.param, err)
		}
	}
	if v := q.Get(api.FlowVerdict); v != "" {
		if f.Verdict, err = flow.ParseVerdict(v); err != nil {
			return f, fmt.Errorf("%s: %w", api.FlowVerdict, err)
		}
	}
	if v := q.Get(api.FlowKind); v != "" {
		if f.Kind, err = flow.ParseKind(v); err != nil {
			return f, fmt.Errorf("%s: %w", api.FlowKind, err)
		}
	}
	if v := q.Get(api.FlowRule); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return f, fmt.Errorf("%s %q: want a rule id", api.FlowRule, v)
		}
		f.RuleID = uint32(n)
	}
	if v := q.Get(api.FlowStaged); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return f, fmt.Errorf("%s %q: want a rule id", api.FlowStaged, v)
		}
		f.StagedRuleID = uint32(n)
	}
	if v := q.Get(api.FlowPort); v != "" {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || n == 0 {
			return f, fmt.Errorf("%s %q: want a port 1-65535", api.FlowPort, v)
		}
		f.Port = uint16(n)
	}
	if v := q.Get(api.FlowProto); v != "" {
		if f.Proto, err = parseProto(v); err != nil {
			return f, err
		}
	}
	if f.Since, err = parseSince(q.Get(api.FlowSince), now); err != nil {
		return f, err
	}
	if v := q.Get(api.FlowUntil); v != "" {
		if f.Until, err = parseSince(v, now); err != nil {
			return f, fmt.Errorf("until: %w", err)
		}
	}
	f.Host = q.Get(api.FlowHost)
	f.User = userFilter(r) // identity.go
	if v := q.Get(api.FlowApp); v != "" {
		if !slices.Contains(policy.KnownApps, v) {
			return f, fmt.Errorf("%s %q: want an AppID such as APP_SSH (%s)", api.FlowApp, v, strings.Join(policy.KnownApps, ", "))
		}
		f.App = v
	}
	if v := q.Get(api.FlowLimit); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > flowstore.MaxLimit {
			return f, fmt.Errorf("%s %q: want 1-%d", api.FlowLimit, v, flowstore.MaxLimit)
		}
		f.Limit = n
	}
	return f, nil
}

func apiFlow(r *flow.Record) api.Flow {
	out := api.Flow{
		ID: r.ID, Kind: r.Kind.String(), Host: r.Host,
		Src: r.Src.String(), Dst: r.Dst.String(), Proto: protoName(r.Proto),
		SrcPort: r.SrcPort, DstPort: r.DstPort,
		SrcWorkload: r.SrcWorkload, DstWorkload: r.DstWorkload,
		SrcBytes: r.SrcBytes, SrcPackets: r.SrcPackets, DstBytes: r.DstBytes, DstPackets: r.DstPackets,
		Start: r.Start, Seen: r.Seen,
		RuleID: r.RuleID, Verdict: r.Verdict.String(), StagedRuleID: r.StagedRuleID, Mirror: r.Mirror, User: r.User,
		App: r.App, TLSVersion: r.TLSVersion, ServerName: r.ServerName,
	}
	if r.IsICMP() {
		t, c := r.ICMPType, r.ICMPCode
		out.ICMPType, out.ICMPCode = &t, &c
	}
	if !r.End.IsZero() {
		e := r.End
		out.End = &e
	}
	return out
}

func (s *Server) handleFlows(w http.ResponseWriter, r *http.Request) error {
	if s.flows == nil {
		return httpError(http.StatusServiceUnavailable, fmt.Errorf("flow store not open"))
	}
	f, err := flowFilter(r, s.now())
	if err != nil {
		return httpError(http.StatusBadRequest, err)
	}
	recs, err := s.flows.Query(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]api.Flow, len(recs))
	for i := range recs {
		out[i] = apiFlow(&recs[i])
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// stagedRule is the rule that would decide the record's flow if staged
// rules were enforced, when that is not the rule that did: staged rules
// are not in the kernel, so this is where they are counted. It uses the
// latest revision, which may be newer than the one the flow met.
// d is scratch space reused between records.
func stagedRule(ev *eval.Evaluator, r *flow.Record, d *eval.Decision) uint32 {
	f := eval.Flow{Src: r.Src, Dst: r.Dst, Proto: r.Proto, Port: r.DstPort, ICMPType: -1, ICMPCode: -1, User: r.User,
		App: r.App, TLSVersion: r.TLSVersion}
	if r.IsICMP() {
		f.Port, f.ICMPType, f.ICMPCode = 0, int16(r.ICMPType), int16(r.ICMPCode)
	}
	ev.EvaluateInto(f, d)
	if d.StagedRuleID == 0 || d.StagedRuleID == d.RuleID {
		return 0
	}
	if info, ok := ev.Rule(d.StagedRuleID); !ok || info.Mode != policy.ModeStaged {
		return 0
	}
	return d.StagedRuleID
}
