package manager

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulkhead/bulkhead/internal/analysis"
	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/flowstore"
	"github.com/bulkhead/bulkhead/internal/tagexpr"
)

// IDS alerts: agents send Suricata EVE JSON records over the agent channel
// (SendAlerts); the control plane hands them to ingestAlerts with the host
// of the sender's certificate; they are completed (host, workloads),
// stored in flows.db's alerts table, listed by GET /ids/alerts and counted
// on the map.

func (s *Server) idsAlertRoutes() []route {
	return []route{
		{method: "GET", path: api.IDSAlertsPath, role: api.RoleAuditor,
			summary: "IDS alerts as Suricata EVE JSON records, newest first (?since=&until=&severity=&workload=&sid=&host=&limit=)",
			reply:   []json.RawMessage{}, handle: s.handleIDSAlerts},
	}
}

// idsAlertMetrics are the alert pipeline's Prometheus series.
type idsAlertMetrics struct {
	stored    *prometheus.CounterVec
	malformed prometheus.Counter
	// malformedN drives the log's 1, 2, 4, ... rate limit.
	malformedN atomic.Uint64
}

// registerIDSAlertMetrics adds the alert series to the manager's registry;
// it needs the control plane for the agents' drop counts.
func (s *Server) registerIDSAlertMetrics() {
	m := &idsAlertMetrics{
		stored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulkhead_ids_alerts_total", Help: "IDS alerts received from agents, by severity (a batch resent after a lost answer counts again; it is stored once).",
		}, []string{"severity"}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulkhead_ids_alerts_malformed_total", Help: "IDS alert records from agents that were no EVE alert and were skipped.",
		}),
	}
	dropped := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "bulkhead_ids_alerts_dropped_by_agents_total", Help: "IDS alerts agents discarded (buffer full) and reported.",
	}, func() float64 { _, d := s.agents.AlertCounts(); return float64(d) })
	s.metrics.reg.MustRegister(m.stored, m.malformed, dropped)
	s.idsAlerts = m
}

// alertStore is the flow store's alert table.
func (s *Server) alertStore() (flowstore.AlertStore, error) {
	if s.flows == nil {
		return nil, httpError(http.StatusServiceUnavailable, errors.New("flow store not open"))
	}
	as, ok := s.flows.(flowstore.AlertStore)
	if !ok {
		return nil, httpError(http.StatusServiceUnavailable, errors.New("the flow store keeps no IDS alerts"))
	}
	return as, nil
}

// IngestAlerts stores the EVE alert records host sent; the control plane
// calls it with the host its client certificate names. A record that is
// no EVE alert is skipped and counted, never failing the batch.
func (s *Server) IngestAlerts(ctx context.Context, host string, eve [][]byte) (int, error) {
	as, err := s.alertStore()
	if err != nil {
		return 0, fmt.Errorf("manager: ingest alerts from %s: %w", host, err)
	}
	workloadOf := func(netip.Addr) string { return "" }
	if e, err := s.evals.entry(ctx, 0); err != nil {
		s.log.Warn("ids alerts: no inventory to name workloads", "host", host, "err", err)
	} else {
		workloadOf = func(a netip.Addr) string { n, _ := e.eval.WorkloadOf(a); return n }
	}
	out := make([]flowstore.Alert, 0, len(eve))
	for i, raw := range eve {
		a, err := completeAlert(raw, host, workloadOf)
		if err != nil {
			s.idsAlerts.malformed.Inc()
			if n := s.idsAlerts.malformedN.Add(1); bits.OnesCount64(n) == 1 {
				s.log.Warn("malformed IDS alert skipped", "host", host, "index", i, "total", n, "err", err)
			}
			continue
		}
		out = append(out, a)
	}
	if err := as.InsertAlerts(ctx, out); err != nil {
		return 0, fmt.Errorf("manager: ingest %d alerts from %s: %w", len(out), host, err)
	}
	for i := range out {
		// The label's values stay few whatever agents send.
		sev := "other"
		if n := out[i].Severity; n >= 1 && n <= 4 {
			sev = strconv.Itoa(n)
		}
		s.idsAlerts.stored.WithLabelValues(sev).Inc()
	}
	return len(out), nil
}

// eveTimeLayouts are the timestamps EVE records carry: Suricata's own
// ("2026-03-01T12:00:00.123456+0000") and RFC 3339.
var eveTimeLayouts = []string{"2006-01-02T15:04:05.999999999-0700", time.RFC3339Nano}

func parseEVETime(v string) (time.Time, error) {
	for _, l := range eveTimeLayouts {
		if t, err := time.Parse(l, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("timestamp %q: want Suricata's 2006-01-02T15:04:05.000000-0700 or RFC 3339", v)
}

// defaultSeverity is Suricata's for a rule without priority or classtype.
const defaultSeverity = 3

// completeAlert reads an agent's EVE alert record into the stored columns
// and rewrites its "bulkhead" object: host set to the sender, workloads
// filled from the inventory where the agent left them empty. Every other
// field stays as the agent wrote it, in its order.
func completeAlert(raw []byte, host string, workloadOf func(netip.Addr) string) (flowstore.Alert, error) {
	var ev api.EVEAlert
	if err := json.Unmarshal(raw, &ev); err != nil {
		return flowstore.Alert{}, fmt.Errorf("EVE record: %w", err)
	}
	if ev.EventType != "alert" {
		return flowstore.Alert{}, fmt.Errorf("EVE record: event_type %q, want alert", ev.EventType)
	}
	if ev.Alert.SignatureID == 0 {
		return flowstore.Alert{}, errors.New("EVE record: alert.signature_id missing")
	}
	ts, err := parseEVETime(ev.Timestamp)
	if err != nil {
		return flowstore.Alert{}, fmt.Errorf("EVE record: %w", err)
	}
	src, err := netip.ParseAddr(ev.SrcIP)
	if err != nil {
		return flowstore.Alert{}, fmt.Errorf("EVE record: src_ip %q: not an IP address", ev.SrcIP)
	}
	dst, err := netip.ParseAddr(ev.DestIP)
	if err != nil {
		return flowstore.Alert{}, fmt.Errorf("EVE record: dest_ip %q: not an IP address", ev.DestIP)
	}
	src, dst = src.Unmap(), dst.Unmap()
	bh := ev.Bulkhead
	bh.Host = host
	if bh.SrcWorkload == "" {
		bh.SrcWorkload = workloadOf(src)
	}
	if bh.DestWorkload == "" {
		bh.DestWorkload = workloadOf(dst)
	}
	out, err := setBulkhead(raw, bh)
	if err != nil {
		return flowstore.Alert{}, fmt.Errorf("EVE record: %w", err)
	}
	sev := ev.Alert.Severity
	if sev <= 0 {
		sev = defaultSeverity
	}
	id := sha256.New()
	id.Write([]byte(host))
	id.Write([]byte{0})
	id.Write(raw)
	return flowstore.Alert{
		ID: id.Sum(nil)[:16], Time: ts, Host: host,
		SID: ev.Alert.SignatureID, GID: ev.Alert.GID, Rev: ev.Alert.Rev, Severity: sev,
		Action: ev.Alert.Action, Signature: ev.Alert.Signature, Category: ev.Alert.Category,
		Proto: ev.Proto, AppProto: ev.AppProto,
		Src: src, SrcPort: ev.SrcPort, Dst: dst, DstPort: ev.DestPort,
		SrcWorkload: bh.SrcWorkload, DstWorkload: bh.DestWorkload, FlowID: ev.FlowID,
		EVE: out,
	}, nil
}

// setBulkhead returns the JSON object raw with its "bulkhead" member's
// host and workloads replaced by bh's (other members of that object kept),
// every other member as it was, in order; "bulkhead" goes last if it was
// missing.
func setBulkhead(raw []byte, bh api.EVEBulkhead) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	member := func(key string, val []byte) {
		if !first {
			b.WriteByte(',')
		}
		first = false
		k, _ := json.Marshal(key)
		b.Write(k)
		b.WriteByte(':')
		b.Write(val)
	}
	var old map[string]json.RawMessage
	wrote := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, fmt.Errorf("member %q: %w", key, err)
		}
		// encoding/json matches member names without case: no
		// "Bulkhead" may stay beside the one the manager wrote.
		if !strings.EqualFold(key, "bulkhead") {
			member(key, val)
			continue
		}
		if wrote {
			continue
		}
		if err := json.Unmarshal(val, &old); err != nil && !bytes.Equal(bytes.TrimSpace(val), []byte("null")) {
			return nil, fmt.Errorf("bulkhead: %w", err)
		}
		v, err := bulkheadObject(old, bh)
		if err != nil {
			return nil, err
		}
		member("bulkhead", v)
		wrote = true
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("data after the JSON object")
	}
	if !wrote {
		v, err := bulkheadObject(nil, bh)
		if err != nil {
			return nil, err
		}
		member("bulkhead", v)
	}
	b.WriteByte('}')
	var compact bytes.Buffer
	if err := json.Compact(&compact, b.Bytes()); err != nil {
		return nil, err
	}
	return compact.Bytes(), nil
}

// bulkheadObject merges bh's fields into the agent's bulkhead object.
func bulkheadObject(old map[string]json.RawMessage, bh api.EVEBulkhead) ([]byte, error) {
	m := make(map[string]json.RawMessage, len(old)+6)
	for k, v := range old {
		m[k] = v
	}
	set := func(k, v string) {
		if v == "" {
			delete(m, k)
			return
		}
		j, _ := json.Marshal(v)
		m[k] = j
	}
	set("host", bh.Host)
	set("src_workload", bh.SrcWorkload)
	set("dest_workload", bh.DestWorkload)
	return json.Marshal(m)
}

// alertFilter reads GET /ids/alerts query parameters.
func alertFilter(r *http.Request, now time.Time) (flowstore.AlertFilter, error) {
	q := r.URL.Query()
	var f flowstore.AlertFilter
	var err error
	if f.Since, err = parseAgo(q.Get(api.AlertSince), now); err != nil {
		return f, err
	}
	if v := q.Get(api.AlertUntil); v != "" {
		if f.Until, err = parseAgo(v, now); err != nil {
			return f, fmt.Errorf("until: %w", err)
		}
	}
	if v := q.Get(api.AlertSeverity); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 255 {
			return f, fmt.Errorf("%s %q: want 1 (the worst) or more; alerts of that severity or worse are listed", api.AlertSeverity, v)
		}
		f.MaxSeverity = n
	}
	f.Workload = q.Get(api.AlertWorkload)
	f.Host = q.Get(api.AlertHost)
	if v := q.Get(api.AlertSID); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return f, fmt.Errorf("%s %q: want a signature id", api.AlertSID, v)
		}
		f.SID = uint32(n)
	}
	if v := q.Get(api.AlertLimit); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > flowstore.MaxLimit {
			return f, fmt.Errorf("%s %q: want 1-%d", api.AlertLimit, v, flowstore.MaxLimit)
		}
		f.Limit = n
	}
	return f, nil
}

func (s *Server) handleIDSAlerts(w http.ResponseWriter, r *http.Request) error {
	as, err := s.alertStore()
	if err != nil {
		return err
	}
	f, err := alertFilter(r, s.now())
	if err != nil {
		return httpError(http.StatusBadRequest, err)
	}
	alerts, err := as.QueryAlerts(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]json.RawMessage, len(alerts))
	for i := range alerts {
		out[i] = alerts[i].EVE
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// mapAlerts adds the IDS alerts of the map's window to m, rolled up as its
// connections are. A flow store without alerts leaves m as it is.
func (s *Server) mapAlerts(ctx context.Context, a *analysis.Analyzer, m *analysis.Map, f flowstore.Filter, scope tagexpr.Expr) error {
	as, err := s.alertStore()
	if err != nil {
		return nil
	}
	counts, err := as.CountAlerts(ctx, flowstore.AlertFilter{Since: f.Since, Until: f.Until})
	if err != nil {
		return fmt.Errorf("map: count alerts: %w", err)
	}
	ends := make([]analysis.AlertEnds, len(counts))
	for i, c := range counts {
		ends[i] = analysis.AlertEnds{SrcWorkload: c.SrcWorkload, DstWorkload: c.DstWorkload, Src: c.Src, Dst: c.Dst, Alerts: c.Alerts}
	}
	a.AddAlerts(m, scope, ends)
	return nil
}
