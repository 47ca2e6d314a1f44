package console_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/dpi"
	"github.com/bulkhead/bulkhead/internal/ids"
	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// idsInventory is the IDS corpus captures' lab (internal/ids/testdata/
// captures): web1 (10.77.1.10) serving HTTP, HTTPS, DNS; the client
// (10.77.7.10) attacking it; db1 beside web1. One detect profile for the
// shop, one prevent profile for its web tier.
const idsInventory = `apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: web1}
spec: {ips: [10.77.1.10], host: host-1, interface: bhwweb1, os: linux, tags: {env: lab, app: shop, tier: web}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: db1}
spec: {ips: [10.77.2.10], host: host-1, interface: bhwdb1, os: linux, tags: {env: lab, app: shop, tier: db}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: client}
spec: {ips: [10.77.7.10], host: host-2, tags: {env: lab, app: clients, tier: desktop}}
---
apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: shop}
spec: {match: 'app == "shop"'}
---
apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: shop-web}
spec: {match: 'app == "shop" && tier == "web"'}
---
apiVersion: bulkhead.io/v1
kind: IDSProfile
metadata: {name: shop-detect, description: every corpus signature on the shop}
spec:
  appliedTo: [shop]
  mode: detect
  signatures: {signatureSets: [corpus]}
---
apiVersion: bulkhead.io/v1
kind: IDSProfile
metadata: {name: web-prevent}
spec:
  appliedTo: [shop-web]
  mode: prevent
  signatures: {maxSeverity: 1, classtypes: [web-application-attack, attempted-admin]}
---
apiVersion: bulkhead.io/v1
kind: IDSVariables
metadata: {name: default}
spec:
  address: {HOME_NET: "[10.77.1.0/24]"}
  port: {HTTP_PORTS: "[80,8080]"}
`

// idsCapture is a corpus capture run through the real engine as web1's
// agent would: inline for the prevent profile, a copy for detect.
type idsCapture struct {
	file    string
	inline  bool
	profile string
	// ago is how long before now the capture's first alert is placed.
	ago time.Duration
}

var idsCaptures = []idsCapture{
	{"http.pcap", true, "web-prevent", 20 * time.Minute},
	{"tls.pcap", false, "shop-detect", 10 * time.Minute},
	{"dns.pcap", false, "shop-detect", 3 * time.Hour},
}

// idsLate arrives while the page is open, to be seen by its auto-refresh.
var idsLate = idsCapture{"ssh.pcap", false, "shop-detect", time.Minute}

// idsAlerts runs the corpus rules over the captures and returns the EVE
// records the agent would send, moved to recent times (the captures are
// older than any window), and what each capture raised by sid.
func idsAlerts(t *testing.T, root string, now time.Time, captures ...idsCapture) (eve [][]byte, sids map[string][]uint32) {
	t.Helper()
	td := filepath.Join(root, "internal", "ids", "testdata")
	vf, err := os.Open(filepath.Join(td, "corpus.vars"))
	if err != nil {
		t.Fatal(err)
	}
	defer vf.Close()
	vars, err := rules.ReadVars(vf, "corpus.vars")
	if err != nil {
		t.Fatal(err)
	}
	rf, err := os.Open(filepath.Join(td, "corpus.rules"))
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	// The corpus holds a rule RE2 cannot run on purpose; the rest load.
	rs, _ := rules.Read(rf, "corpus.rules", vars)
	if len(rs) == 0 {
		t.Fatal("corpus.rules: no rule loaded")
	}
	engine, problems := ids.Compile(rs)
	if len(problems) > 0 {
		t.Fatalf("compile corpus.rules: %+v", problems)
	}
	sids = map[string][]uint32{}
	blocked := 0
	for _, c := range captures {
		var got []*ids.Alert
		insp := ids.NewInspector(ids.InspectorConfig{Interface: "bhwweb1", OnAlert: func(a *ids.Alert) { got = append(got, a) }})
		f, err := os.Open(filepath.Join(td, "captures", c.file))
		if err != nil {
			t.Fatal(err)
		}
		pr, err := dpi.NewPacketReader(f)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		var last time.Time
		for {
			pkt, ts, err := pr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", c.file, err)
			}
			last = ts
			insp.Packet(ts, pkt, engine, c.inline)
		}
		insp.CloseAll(last, engine)
		f.Close()
		if len(got) == 0 {
			t.Fatalf("%s raised no alert", c.file)
		}
		mode := policy.IDSModeDetect
		if c.inline {
			mode = policy.IDSModePrevent
		}
		shift := now.Add(-c.ago).Sub(got[0].Time)
		for _, a := range got {
			a.Time = a.Time.Add(shift)
			a.Flow.Start = a.Flow.Start.Add(shift)
			a.Bulkhead = ids.BulkheadInfo{Interface: "bhwweb1", Profile: c.profile, Mode: mode}
			b, err := json.Marshal(a.EVE())
			if err != nil {
				t.Fatal(err)
			}
			eve = append(eve, b)
			sids[c.file] = append(sids[c.file], a.Rule.SID)
			if a.Blocked {
				blocked++
			}
		}
	}
	// The corpus's Log4j signature (1000005) is a drop rule: inline, it
	// blocks the flow.
	if sids["http.pcap"] != nil && blocked == 0 {
		t.Fatalf("no alert blocked inline; sids %v", sids)
	}
	return eve, sids
}

// TestIDSInBrowser runs web/e2e/ids.mjs in headless chromium against a
// manager holding the IDS corpus's lab, the corpus rules imported as
// signature set "corpus", two IDS profiles, and the alerts the real engine
// raised on the corpus captures (HTTP inline: the Log4j drop rule blocks),
// ingested as from host-1's agent. The page lists them newest first,
// narrows them by window, severity, workload and sid, shows a whole EVE
// record, the profiles and the set, and why db1 is not checked against web
// signatures.
func TestIDSInBrowser(t *testing.T) {
	node, root := needBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m := startConsoleManager(t, ctx)
	srv, url, admin, adminToken := m.srv, m.url, m.admin, m.adminToken
	auditor, err := admin.CreateToken(ctx, api.TokenRequest{Name: "ids-auditor", Role: api.RoleAuditor})
	if err != nil {
		t.Fatal(err)
	}

	rf, err := os.Open(filepath.Join(root, "internal", "ids", "testdata", "corpus.rules"))
	if err != nil {
		t.Fatal(err)
	}
	imported, err := admin.ImportSignatureSet(ctx, "corpus", rf, false)
	rf.Close()
	if err != nil {
		t.Fatalf("import corpus.rules: %v", err)
	}
	docs, err := policy.Decode("ids.yaml", []byte(idsInventory))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Apply(ctx, api.ApplyRequest{Documents: wireDocs(t, docs)}); err != nil {
		t.Fatalf("apply the lab and its IDS profiles: %v", err)
	}
	db1, err := admin.Signatures(ctx, apiclient.SignatureQuery{Workload: "db1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(db1.LeftOut) == 0 {
		t.Fatalf("db1: no signature left out by the workload-aware step: %+v", db1)
	}

	now := time.Now().UTC()
	eve, sids := idsAlerts(t, root, now, idsCaptures...)
	n, err := srv.IngestAlerts(ctx, "host-1", eve)
	if err != nil || n != len(eve) {
		t.Fatalf("ingest %d alerts: stored %d, %v", len(eve), n, err)
	}
	t.Logf("alerts by capture: %v; db1 left out %d (first: sid %d: %s)", sids, len(db1.LeftOut), db1.LeftOut[0].SID, db1.LeftOut[0].Reason)
	recent := len(sids["http.pcap"]) + len(sids["tls.pcap"])

	// The script creates the signal file once the admin's page is open;
	// the SSH capture's alerts arrive then, as from the agent.
	signal := filepath.Join(t.TempDir(), "send-late-alerts")
	lateDone := make(chan error, 1)
	late, _ := idsAlerts(t, root, time.Now().UTC(), idsLate)
	go func() {
		for ctx.Err() == nil {
			if _, err := os.Stat(signal); err == nil {
				_, err := srv.IngestAlerts(ctx, "host-1", late)
				lateDone <- err
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		lateDone <- nil
	}()

	runScript(t, ctx, node, filepath.Join(root, "web"), "ids.mjs",
		"BULKHEAD_URL="+url,
		"BULKHEAD_ADMIN_TOKEN="+strings.TrimSpace(string(adminToken)),
		"BULKHEAD_AUDITOR_TOKEN="+auditor.Secret,
		"IDS_ALERTS_24H="+strconv.Itoa(len(eve)),
		"IDS_ALERTS_1H="+strconv.Itoa(recent),
		"IDS_SET_RULES="+strconv.Itoa(imported.Loaded),
		"IDS_DB1_LEFTOUT_SID="+strconv.FormatUint(uint64(db1.LeftOut[0].SID), 10),
		"IDS_DB1_LEFTOUT_REASON="+db1.LeftOut[0].Reason,
		"IDS_DB1_SIGNATURES="+strconv.Itoa(len(db1.Signatures)),
		"IDS_LATE_SIGNAL="+signal,
		"IDS_LATE_ALERTS="+strconv.Itoa(len(late)),
	)
	cancel()
	if err := <-lateDone; err != nil {
		t.Errorf("ingest the late alerts: %v", err)
	}
}
