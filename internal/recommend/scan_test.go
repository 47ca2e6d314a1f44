package recommend

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/flow"
)

// scanRecord is one connection as the flow store keeps it; reply packets
// 0 is an attempt nobody answered, 1 with 1 sent a refused one.
func scanRecord(src, dst string, dport uint16, sent, replied uint64) flow.Record {
	t := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	return flow.Record{ID: fmt.Sprintf("%s-%s-%d", src, dst, dport), Kind: flow.KindEnd, Proto: 6,
		Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), SrcPort: 40000, DstPort: dport,
		SrcPackets: sent, SrcBytes: 60 * sent, DstPackets: replied, DstBytes: 40 * replied,
		Start: t, Seen: t.Add(time.Second), End: t.Add(time.Second), Verdict: flow.Allow, RuleID: 1}
}

// TestScannerLeftOut: a source that swept ports is reported as a scanner
// and its connections — the answered ones too — get no allow rule, while
// an ordinary client with a few refused connections is not a scanner.
func TestScannerLeftOut(t *testing.T) {
	var recs []flow.Record
	// The intruder: refused on 40 ports of the web and db tiers, and a
	// successful connection to the web server and to the database.
	for p := range 40 {
		dst := []string{"10.0.1.1", "10.0.3.1"}[p%2]
		recs = append(recs, scanRecord("10.0.7.66", dst, uint16(1+p), 1, 1))
	}
	recs = append(recs, scanRecord("10.0.7.66", "10.0.1.1", 443, 6, 5), scanRecord("10.0.7.66", "10.0.3.1", 5432, 8, 6))
	// An ordinary client: refused a few times, mostly served.
	for p := range 5 {
		recs = append(recs, scanRecord("10.0.5.1", "10.0.2.1", uint16(9000+p), 1, 1))
	}
	for range 10 {
		recs = append(recs, scanRecord("10.0.5.1", "10.0.2.1", 8443, 10, 9))
	}
	// Dropped attempts count as unanswered whatever their counters.
	drop := scanRecord("10.0.5.2", "10.0.2.1", 22, 3, 0)
	drop.Kind, drop.Verdict = flow.KindDrop, flow.Drop
	recs = append(recs, drop)

	d := NewScanDetector(20)
	for i := range recs {
		d.Add(&recs[i])
	}
	sc := d.Scanners()
	if len(sc) != 1 || sc[0].Addr != netip.MustParseAddr("10.0.7.66") {
		t.Fatalf("scanners %+v, want only 10.0.7.66", sc)
	}
	if s := sc[0]; s.Failed != 40 || s.Targets != 2 || s.Ports != 40 || s.Connections != 42 || len(s.Examples) != 3 {
		t.Errorf("scanner evidence %+v: want 40 failed targets on 2 hosts and 40 ports, 42 connections, 3 examples", s)
	}
	if d := NewScanDetector(50); len(scannersOf(d, recs)) != 0 {
		t.Errorf("threshold 50: 40 failed targets made a scanner")
	}

	agg, err := NewAggregator(shopInventory(), `app == "shop"`, Options{OneRecordPerConnection: true})
	if err != nil {
		t.Fatal(err)
	}
	if w, ext := agg.Workload(netip.MustParseAddr("10.0.1.1")), agg.Workload(sc[0].Addr); w != "shop-web-1" || ext != "" {
		t.Errorf("Workload: 10.0.1.1 is %q, the scanner %q; want shop-web-1 and none", w, ext)
	}
	agg.ExcludeSources(sc[0].Addr)
	for i := range recs {
		agg.Add(&recs[i])
	}
	draft, err := agg.Draft(nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := agg.Stats(); st.Excluded != 42 || st.Refused != 5 {
		t.Errorf("excluded %d records and %d refused, want the scanner's 42 and the client's 5 refused", st.Excluded, st.Refused)
	}
	var crm bool
	for _, r := range draft.Policy.Spec.Rules {
		all := strings.Join(append(append([]string{}, r.Sources...), r.Destinations...), " ")
		if strings.Contains(all, "10.0.7.66") {
			t.Errorf("rule %s allows the scanner: %+v", r.Name, r)
		}
		if strings.Contains(all, "crm") {
			crm = true
		}
	}
	if !crm {
		t.Errorf("the CRM client's connections got no rule:\n%+v", draft.Policy.Spec.Rules)
	}
}

func scannersOf(d *ScanDetector, recs []flow.Record) []Scanner {
	for i := range recs {
		d.Add(&recs[i])
	}
	return d.Scanners()
}
