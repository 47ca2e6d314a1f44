package console_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/policy"

	_ "github.com/vmware/govmomi/vapi/simulator" // the tags API a sync reads
)

// The data center of TestConsoleAtScale: 24 apps of four tiers with 20
// workloads each, spread over three environments, and a portal whose 80
// web servers call every app: 2,000 workloads.
var (
	scaleEnvs  = []string{"prod", "staging", "dev"}
	scaleTiers = []string{"web", "api", "worker", "db"}
	scalePorts = []uint16{443, 8080, 9000, 5432}
)

const (
	scaleApps    = 24
	scalePerTier = 20
	portalWebs   = 80
)

func scaleApp(a int) string { return fmt.Sprintf("app-%02d", a) }

func scaleName(a, tier, i int) string {
	return fmt.Sprintf("%s-%s-%02d", scaleApp(a), scaleTiers[tier], i)
}

func scaleIP(a, tier, i int) string {
	return fmt.Sprintf("10.%d.%d.%d", 10+a%len(scaleEnvs), a*4+tier, 10+i)
}

func portalIP(i int) string { return fmt.Sprintf("10.10.200.%d", 10+i) }

// scaleInventory is the 2,000 Workload documents.
func scaleInventory() []api.Document {
	var docs []api.Document
	add := func(name, ip string, tags map[string]string) {
		wl := policy.Workload{
			Header: policy.Header{APIVersion: policy.APIVersion, Kind: policy.KindWorkload, Metadata: policy.Metadata{Name: name}},
			Spec:   policy.WorkloadSpec{IPs: []string{ip}, Host: fmt.Sprintf("host-%d", len(docs)%40+1), Tags: tags},
		}
		b, err := json.Marshal(wl)
		if err != nil {
			panic(err)
		}
		docs = append(docs, api.Document{Source: policy.Source{File: "scale.yaml", Index: len(docs) + 1}, Object: b})
	}
	for a := range scaleApps {
		for t := range scaleTiers {
			for i := range scalePerTier {
				add(scaleName(a, t, i), scaleIP(a, t, i), map[string]string{"env": scaleEnvs[a%len(scaleEnvs)], "app": scaleApp(a), "tier": scaleTiers[t]})
			}
		}
	}
	for i := range portalWebs {
		add(fmt.Sprintf("portal-web-%02d", i), portalIP(i), map[string]string{"env": "prod", "app": "portal", "tier": "web"})
	}
	return docs
}

// scaleFlows is a day of the data center's connections: the internet to
// every web server, each tier to a few servers of the next, the portal
// to every app's API. perPair records per connection pair.
func scaleFlows(now time.Time, perPair int) []flow.Record {
	var out []flow.Record
	add := func(src, dst string, port uint16) {
		for range perPair {
			n := len(out)
			start := now.Add(-time.Duration(n%20000) * 4 * time.Second)
			out = append(out, flow.Record{ID: fmt.Sprintf("s%d", n), Kind: flow.KindEnd,
				Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: 6,
				SrcPort: uint16(20000 + n%40000), DstPort: port, SrcBytes: 900, SrcPackets: 9, DstBytes: 15000, DstPackets: 12,
				Start: start, End: start.Add(time.Second), Seen: start.Add(time.Second),
				RuleID: policy.DefaultRuleID, Verdict: flow.Allow})
		}
	}
	for a := range scaleApps {
		for i := range scalePerTier {
			add(fmt.Sprintf("198.51.100.%d", 1+i), scaleIP(a, 0, i), scalePorts[0])
			for t := 0; t+1 < len(scaleTiers); t++ {
				for k := range 2 {
					add(scaleIP(a, t, i), scaleIP(a, t+1, (i*7+k)%scalePerTier), scalePorts[t+1])
				}
			}
		}
	}
	for i := range portalWebs {
		add(fmt.Sprintf("203.0.113.%d", 1+i%50), portalIP(i), 443)
		add(portalIP(i), scaleIP(i%scaleApps, 1, i%scalePerTier), 8080)
	}
	return out
}

// scaleCMDB is a CMDB export that disagrees with the operators on one
// workload's application and names one server nobody else knows.
func scaleCMDB() string {
	return "name,ip_address,u_application,u_tier,owned_by,os\n" +
		fmt.Sprintf("%s,%s,storefront,web,alice,linux\n", scaleName(1, 0, 0), scaleIP(1, 0, 0)) +
		"legacy-billing,10.99.0.5,billing,db,bob,aix\n"
}

// TestConsoleAtScale runs web/e2e/scale.mjs against a manager holding
// 2,000 workloads and tens of thousands of flow records: the map opens
// at the app level and expands an app and a tier with a bounded number of
// drawn elements (timings logged), the inventory lists, filters and
// pages the workloads; and with a CMDB import and a simulated vCenter
// (govmomi's vcsim) added through the console's form, a workload's facts
// show their sources, ages and why each was used or not, and the
// conflicts panel shows the sources' disagreement.
func TestConsoleAtScale(t *testing.T) {
	node, root := needBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m := startConsoleManager(t, ctx)
	srv, url, admin, adminToken := m.srv, m.url, m.admin, m.adminToken

	start := time.Now()
	docs := scaleInventory()
	if _, err := admin.Apply(ctx, api.ApplyRequest{Documents: docs, Summary: "2,000 workloads"}); err != nil {
		t.Fatalf("apply the inventory: %v", err)
	}
	recs := scaleFlows(time.Now().UTC(), 6)
	for i := 0; i < len(recs); i += 2000 {
		if err := srv.IngestFlows(ctx, "host-1", recs[i:min(i+2000, len(recs))]); err != nil {
			t.Fatal(err)
		}
	}
	res, err := admin.ImportCMDB(ctx, api.CMDBImportRequest{File: "servers.csv", Content: scaleCMDB()})
	if err != nil {
		t.Fatalf("import the CMDB export: %v", err)
	}
	if len(res.Conflicts) == 0 || len(res.Created) != 1 {
		t.Fatalf("CMDB import: %d conflicts, created %v; want the disagreement on %s and legacy-billing", len(res.Conflicts), res.Created, scaleName(1, 0, 0))
	}
	t.Logf("setup: %d workloads, %d flow records, CMDB import (%d conflicts) in %s", len(docs)+len(res.Created), len(recs), len(res.Conflicts), time.Since(start).Round(time.Millisecond))

	// A vCenter whose first VM claims the address of a workload the
	// operators declared: a conflict the operators win.
	vc := newVCSim(t)
	vcUser := vc.URL.User.Username()
	vcPassword, _ := vc.URL.User.Password()

	runScript(t, ctx, node, filepath.Join(root, "web"), "scale.mjs",
		"BULKHEAD_URL="+url,
		"BULKHEAD_ADMIN_TOKEN="+strings.TrimSpace(string(adminToken)),
		"BULKHEAD_VCENTER_URL=https://"+vc.URL.Host+"/sdk",
		"BULKHEAD_VCENTER_USER="+vcUser,
		"BULKHEAD_VCENTER_PASSWORD="+vcPassword,
		fmt.Sprintf("BULKHEAD_SCALE_WORKLOADS=%d", len(docs)+len(res.Created)),
		"BULKHEAD_CONFLICT_WORKLOAD="+scaleName(1, 0, 0),
		"BULKHEAD_VCENTER_CLAIM="+scaleIP(2, 3, 0),
		"BULKHEAD_DECLARED_WORKLOAD="+scaleName(2, 3, 0),
	)
	if t.Failed() {
		return
	}

	// What the browser did is in the manager: the vCenter source it added
	// was synced, and the CMDB source it deleted is gone.
	srcs, err := admin.Sources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) != 1 || srcs[0].Name != "vc1" || srcs[0].LastSync == nil || srcs[0].LastError != "" || srcs[0].Records == 0 {
		t.Fatalf("sources after the browser test: %+v; want only vc1, synced", srcs)
	}
	facts, err := admin.WorkloadFacts(ctx, "dc0-h0-vm0")
	if err != nil {
		t.Fatal(err)
	}
	var lost bool
	for _, f := range facts.Facts {
		lost = lost || f.Source == "vc1" && f.Attribute == "ip" && !f.Used && strings.Contains(f.Reason, scaleName(2, 3, 0))
	}
	if facts.Exists || !lost {
		t.Errorf("facts of the vCenter's dc0-h0-vm0: %+v; want no workload, its address left to %s", facts, scaleName(2, 3, 0))
	}
}

// newVCSim starts govmomi's vCenter simulator (TLS, the tags API) and
// gives its first VM the address of a workload the operators declared.
func newVCSim(t *testing.T) *simulator.Server {
	t.Helper()
	m := simulator.VPX()
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	m.Service.TLS = new(tls.Config)
	m.Service.RegisterEndpoints = true
	s := m.Service.NewServer()
	t.Cleanup(func() { s.Close(); m.Remove() })

	ctx := context.Background()
	c, err := govmomi.NewClient(ctx, s.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	f := find.NewFinder(c.Client)
	dc, err := f.DefaultDatacenter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.SetDatacenter(dc)
	vm, err := f.VirtualMachine(ctx, "DC0_H0_VM0")
	if err != nil {
		t.Fatal(err)
	}
	task, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{
		ExtraConfig: []types.BaseOptionValue{&types.OptionValue{Key: "SET.guest.ipAddress", Value: scaleIP(2, 3, 0)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}
