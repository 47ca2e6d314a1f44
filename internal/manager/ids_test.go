package manager

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/nft"
	"github.com/bulkhead/bulkhead/internal/span"
	"github.com/bulkhead/bulkhead/internal/store"
)

// idsShop: a web and a db workload on host h1, a db workload on h2.
const idsShop = `apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: web1}
spec: {ips: [10.80.0.10], host: h1, interface: bhwweb1, os: linux, tags: {app: shop, tier: web}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: db1}
spec: {ips: [10.80.0.20], host: h1, interface: bhwdb1, os: linux, tags: {app: shop, tier: db}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: db2}
spec: {ips: [10.80.1.20], host: h2, interface: bhwdb2, tags: {app: shop}}
---
apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: shop-web}
spec: {match: 'app == "shop" && tier == "web"'}
`

const idsProfiles = `apiVersion: bulkhead.io/v1
kind: IDSProfile
metadata: {name: baseline}
spec:
  mode: detect
  signatures: {maxSeverity: 2}
---
apiVersion: bulkhead.io/v1
kind: IDSProfile
metadata: {name: web-ips}
spec:
  appliedTo: [shop-web]
  mode: prevent
  signatures:
    metadata: {attack_target: [Web_Server]}
    sids: [1005]
---
apiVersion: bulkhead.io/v1
kind: IDSVariables
metadata: {name: default}
spec:
  address: {HOME_NET: "[10.80.0.0/16]"}
`

func gz(t *testing.T, text string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(text))
	zw.Close()
	return b.Bytes()
}

func TestIDSSignatureSetsAndSpan(t *testing.T) {
	tm := startManager(t)
	op := tm.client(t, api.RoleOperator)
	aud := tm.client(t, api.RoleAuditor)
	ctx := context.Background()
	applyText(t, op, idsShop)

	payload := func(host string) []byte {
		t.Helper()
		_, _, p, err := tm.srv.hostSpan(ctx, host)
		if err != nil {
			t.Fatalf("span of %s: %v", host, err)
		}
		return p
	}
	ids := func(host string) *nft.IDSState {
		t.Helper()
		st, err := span.Decode(payload(host))
		if err != nil {
			t.Fatal(err)
		}
		return st.IDS
	}
	before := payload("h1")

	// An auditor may not import; a file of which nothing loads is refused.
	if _, err := aud.ImportSignatureSet(ctx, "test", strings.NewReader(idsTestRules), false); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("auditor import: %v", err)
	}
	if _, err := op.ImportSignatureSet(ctx, "bad", strings.NewReader("alert tcp any any -> any any (msg:\"x\"; lua:a.lua; sid:1;)\nnot a rule\n"), false); !isStatus(err, http.StatusBadRequest) {
		t.Fatalf("import of nothing usable: %v", err)
	}
	if _, err := op.ImportSignatureSet(ctx, "Bad Name", strings.NewReader(idsTestRules), false); !isStatus(err, http.StatusBadRequest) {
		t.Fatalf("bad name: %v", err)
	}

	// Imported gzip'd (recognized by its magic), version 1; the unsupported
	// rule is reported with its sid and keyword.
	res, err := op.ImportSignatureSet(ctx, "test", bytes.NewReader(gz(t, idsTestRules)), false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 1 || res.Loaded != 7 || len(res.Problems) != 1 || res.Problems[0].SID != 1099 || res.Problems[0].Line != 9 || len(res.SHA256) != 64 {
		t.Fatalf("import: %+v", res)
	}
	if res.Problems[0].Keyword == "" || res.ByKeyword[res.Problems[0].Keyword] != 1 {
		t.Errorf("problem keyword: %+v, by keyword %v", res.Problems[0], res.ByKeyword)
	}
	// The same file again is the same version.
	if again, err := op.ImportSignatureSet(ctx, "test", strings.NewReader(idsTestRules), false); err != nil || again.Version != 1 || again.Loaded != 7 {
		t.Fatalf("same file again: %+v %v", again, err)
	}
	// Without a profile, no host's state changes: the bytes are those of
	// before IDS.
	if got := payload("h1"); !bytes.Equal(got, before) {
		t.Fatalf("a signature set without a profile changed the state:\n%s\n%s", before, got)
	}

	applyText(t, op, idsProfiles)
	h1 := ids("h1")
	if h1 == nil || len(h1.Workloads) != 2 {
		t.Fatalf("h1 IDS: %+v", h1)
	}
	if h1.Version != "test@1" || h1.Vars["HOME_NET"] != "[10.80.0.0/16]" {
		t.Errorf("h1 version %q HOME_NET %q", h1.Version, h1.Vars["HOME_NET"])
	}
	db1, web1 := h1.Workloads[0], h1.Workloads[1]
	if db1.Name != "db1" || db1.Interface != "bhwdb1" || db1.Mode != "detect" || !slices.Equal(db1.Profiles, []string{"baseline"}) {
		t.Errorf("db1: %+v", db1)
	}
	// The db tier (Linux) gets no web-server and no Windows signatures.
	if !slices.Equal(db1.SIDs, []uint32{1002, 1004, 1006}) || db1.PreventSIDs != nil {
		t.Errorf("db1 sids %v prevent %v", db1.SIDs, db1.PreventSIDs)
	}
	if web1.Name != "web1" || web1.Mode != "prevent" || !slices.Equal(web1.Profiles, []string{"baseline", "web-ips"}) ||
		!slices.Equal(web1.SIDs, []uint32{1001, 1004, 1005, 1006}) || !slices.Equal(web1.PreventSIDs, []uint32{1001, 1005}) {
		t.Errorf("web1: %+v", web1)
	}
	// The rules are the text as imported, ordered by sid.
	lines := strings.Split(idsTestRules, "\n")
	want := []string{lines[1], lines[2], lines[4], lines[5], lines[6]}
	if !slices.Equal(h1.Rules, want) {
		t.Errorf("h1 rules:\n%s\nwant\n%s", strings.Join(h1.Rules, "\n"), strings.Join(want, "\n"))
	}
	// A workload the inventory knows nothing about (db2 on h2: no OS, no
	// tier) gets everything baseline chose.
	h2 := ids("h2")
	if h2 == nil || len(h2.Workloads) != 1 || !slices.Equal(h2.Workloads[0].SIDs, []uint32{1001, 1002, 1003, 1004, 1006, 1007}) {
		t.Fatalf("h2: %+v", h2)
	}

	// What db2 served lately (flow records) makes it known: a PostgreSQL
	// server gets no web-server signatures.
	now := time.Now().UTC()
	rec := flow.Record{ID: "c1", Kind: flow.KindEnd, Host: "h1", Src: netip.MustParseAddr("10.80.0.10"), Dst: netip.MustParseAddr("10.80.1.20"), Proto: 6,
		SrcPort: 40000, DstPort: 5432, SrcWorkload: "web1", SrcBytes: 100, SrcPackets: 2, DstBytes: 300, DstPackets: 3,
		Start: now.Add(-time.Minute), End: now, Seen: now, RuleID: 1, Verdict: flow.Allow, App: "APP_POSTGRES"}
	if err := tm.srv.IngestFlows(ctx, "h1", []flow.Record{rec}); err != nil {
		t.Fatal(err)
	}
	if changed, err := tm.srv.refreshServed(ctx); err != nil || !changed {
		t.Fatalf("refresh served: %v, %v", changed, err)
	}
	if changed, _ := tm.srv.refreshServed(ctx); changed {
		t.Error("a second refresh over the same records reports a change")
	}
	if got := ids("h2").Workloads[0].SIDs; !slices.Equal(got, []uint32{1002, 1003, 1004, 1006}) {
		t.Errorf("db2 serving postgres: %v", got)
	}
	sel, err := aud.Signatures(ctx, apiclient.SignatureQuery{Workload: "db2", SID: 1001})
	if err != nil {
		t.Fatal(err)
	}
	if sel.Mode != "detect" || len(sel.Signatures) != 0 || len(sel.LeftOut) != 1 || !strings.Contains(sel.LeftOut[0].Reason, "web server") ||
		sel.Facts == nil || !slices.Contains(sel.Facts.Roles, "db") || len(sel.Why) != 2 ||
		!strings.Contains(sel.Why[1], "web-ips: does not apply") || !strings.Contains(sel.Why[0], "baseline: left out for this workload") {
		t.Errorf("db2 sid 1001: %+v", sel)
	}
	sel, err = aud.Signatures(ctx, apiclient.SignatureQuery{Workload: "web1"})
	if err != nil {
		t.Fatal(err)
	}
	if sel.Mode != "prevent" || len(sel.Signatures) != 4 || sel.Signatures[0].SID != 1001 || !sel.Signatures[0].Prevent ||
		!slices.Equal(sel.Signatures[0].Profiles, []string{"baseline", "web-ips"}) || sel.Signatures[2].SID != 1005 {
		t.Errorf("web1 selection: %+v", sel)
	}
	all, err := aud.Signatures(ctx, apiclient.SignatureQuery{SID: 1002})
	if err != nil || len(all.Signatures) != 1 || all.Signatures[0].Rule != lines[2] || all.Signatures[0].Msg != "TEST postgres copy program" {
		t.Errorf("sid 1002: %+v, %v", all, err)
	}

	// A new version with one more signature reaches the states; its
	// version is in the state's name.
	more := idsTestRules + `alert http any any -> $HTTP_SERVERS any (msg:"TEST struts ognl"; flow:to_server; http.uri; content:"%{"; classtype:web-application-attack; metadata:attack_target Web_Server; sid:1008; rev:1;)` + "\n"
	res, err = op.ImportSignatureSet(ctx, "test", strings.NewReader(more), false)
	if err != nil || res.Version != 2 || res.Loaded != 8 {
		t.Fatalf("second import: %+v %v", res, err)
	}
	h1 = ids("h1")
	if h1.Version != "test@2" || !slices.Contains(h1.Workloads[1].SIDs, 1008) || !slices.Contains(h1.Workloads[1].PreventSIDs, 1008) || slices.Contains(h1.Workloads[0].SIDs, 1008) {
		t.Errorf("after version 2: %s %+v", h1.Version, h1.Workloads)
	}
	sets, err := aud.SignatureSets(ctx)
	if err != nil || len(sets) != 1 || sets[0].Name != "test" || sets[0].Version != 2 || sets[0].Rules != 8 || sets[0].Problems != 1 {
		t.Fatalf("sets: %+v %v", sets, err)
	}
	audit, err := aud.Audit(ctx, apiclient.AuditQuery{Object: "SignatureSet/test"})
	if err != nil || len(audit) != 2 || audit[0].Action != "ids.import" {
		t.Errorf("audit: %+v %v", audit, err)
	}

	// A restarted manager reads the sets back from the store.
	fresh := newServer(tm.srv.cfg, tm.srv.log, tm.srv.store, tm.srv.ca)
	fresh.flows = tm.srv.flows
	_, _, p, err := fresh.hostSpan(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	if got := payload("h1"); !bytes.Equal(p, got) {
		t.Error("a manager that loaded the sets from the store computes another state")
	}

	// Profiles are policy: a rollback to the revision before them takes
	// the IDS part away, one to theirs brings it back.
	if _, err := op.Rollback(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got := payload("h1"); !bytes.Equal(got, before) {
		t.Error("rolled back before the profiles, the state differs from before IDS")
	}
	if _, err := op.Rollback(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if got := ids("h1"); got == nil || got.Version != "test@2" {
		t.Errorf("rolled forward: %+v", got)
	}

	// Deleting the set leaves the profiles without signatures: no IDS.
	if err := op.DeleteSignatureSet(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	if err := op.DeleteSignatureSet(ctx, "test"); !isStatus(err, http.StatusNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if got := ids("h1"); got != nil {
		t.Errorf("after delete: %+v", got)
	}
	if got := payload("h1"); !bytes.Equal(got, before) {
		t.Error("with no signatures left, the state differs from before IDS")
	}
}

var _ store.SignatureSetStore = (*store.SQLite)(nil)

// TestIDSPreventActionSpan: a prevent profile with preventAction drop puts
// the alert signatures it chose in the workload's block sids, and the
// signatures route says they block; changing it back to asWritten takes
// them out.
func TestIDSPreventActionSpan(t *testing.T) {
	tm := startManager(t)
	op := tm.client(t, api.RoleOperator)
	ctx := context.Background()
	applyText(t, op, idsShop)
	if _, err := op.ImportSignatureSet(ctx, "test", strings.NewReader(idsTestRules), false); err != nil {
		t.Fatal(err)
	}
	profile := func(action string) string {
		return `apiVersion: bulkhead.io/v1
kind: IDSProfile
metadata: {name: web-ips}
spec:
  appliedTo: [shop-web]
  mode: prevent
  preventAction: ` + action + `
  signatures:
    metadata: {attack_target: [Web_Server]}
    sids: [1005]
`
	}
	web1 := func() nft.IDSWorkload {
		t.Helper()
		_, _, p, err := tm.srv.hostSpan(ctx, "h1")
		if err != nil {
			t.Fatal(err)
		}
		st, err := span.Decode(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.IDS == nil || len(st.IDS.Workloads) != 1 {
			t.Fatalf("h1 IDS: %+v", st.IDS)
		}
		return st.IDS.Workloads[0]
	}
	enforced := func() map[uint32]string {
		t.Helper()
		sel, err := op.Signatures(ctx, apiclient.SignatureQuery{Workload: "web1"})
		if err != nil {
			t.Fatal(err)
		}
		m := map[uint32]string{}
		for _, s := range sel.Signatures {
			m[s.SID] = s.Enforced
		}
		return m
	}

	applyText(t, op, profile("drop"))
	// 1001 is written alert: enforced as drop; 1005 is written drop and
	// keeps it (it is not a block sid).
	w := web1()
	if w.Name != "web1" || w.Mode != "prevent" || !slices.Equal(w.PreventSIDs, []uint32{1001, 1005}) ||
		!slices.Equal(w.BlockSIDs, []uint32{1001}) || w.RejectSIDs != nil {
		t.Fatalf("web1 with preventAction drop: %+v", w)
	}
	if e := enforced(); e[1001] != "drop" || e[1005] != "drop" || len(e) != 2 {
		t.Errorf("enforced with preventAction drop: %v", e)
	}

	applyText(t, op, profile("reject"))
	if w := web1(); w.BlockSIDs != nil || !slices.Equal(w.RejectSIDs, []uint32{1001}) {
		t.Fatalf("web1 with preventAction reject: %+v", w)
	}
	if e := enforced(); e[1001] != "reject" || e[1005] != "drop" {
		t.Errorf("enforced with preventAction reject: %v", e)
	}

	applyText(t, op, profile("asWritten"))
	if w := web1(); w.BlockSIDs != nil || w.RejectSIDs != nil || !slices.Equal(w.PreventSIDs, []uint32{1001, 1005}) {
		t.Fatalf("web1 as written: %+v", w)
	}
	if e := enforced(); e[1001] != "" || e[1005] != "drop" {
		t.Errorf("enforced as written: %v", e)
	}
}
