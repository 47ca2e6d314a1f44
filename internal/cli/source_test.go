package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/bulkhead/bulkhead/internal/api"

	_ "github.com/vmware/govmomi/vapi/simulator" // the tags API
)

// simVCenter runs govmomi's vCenter simulator over TLS with the tags API,
// gives VM DC0_H0_VM0 the guest address ip and tags app=shop, tier=web,
// and returns its URL, user and password.
func simVCenter(t *testing.T, ip string) (string, string, string) {
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
	vm, err := find.NewFinder(c.Client, true).VirtualMachine(ctx, "/DC0/vm/DC0_H0_VM0")
	if err != nil {
		t.Fatal(err)
	}
	task, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{
		ExtraConfig: []types.BaseOptionValue{&types.OptionValue{Key: "SET.guest.ipAddress", Value: ip}},
	})
	if err != nil || task.Wait(ctx) != nil {
		t.Fatalf("set guest IP: %v", err)
	}
	rc := rest.NewClient(c.Client)
	if err := rc.Login(ctx, s.URL.User); err != nil {
		t.Fatal(err)
	}
	tm := tags.NewManager(rc)
	for cat, tag := range map[string]string{"app": "shop", "tier": "web"} {
		cid, err := tm.CreateCategory(ctx, &tags.Category{Name: cat, Cardinality: "SINGLE", AssociableTypes: []string{"VirtualMachine"}})
		if err != nil {
			t.Fatal(err)
		}
		tid, err := tm.CreateTag(ctx, &tags.Tag{Name: tag, CategoryID: cid})
		if err != nil {
			t.Fatal(err)
		}
		if err := tm.AttachTag(ctx, tid, vm.Reference()); err != nil {
			t.Fatal(err)
		}
	}
	pw, _ := s.URL.User.Password()
	return "https://" + s.URL.Host + "/sdk", s.URL.User.Username(), pw
}

// TestInventorySources imports a messy CMDB export, then syncs a vCenter
// whose VM claims an address the CMDB gave another name: the conflict is
// reported with both sources, their ages and the one used.
func TestInventorySources(t *testing.T) {
	conn := startManager(t)
	with := func(args ...string) []string { return append(args, conn...) }
	csv := "../inventory/cmdb/testdata/servicenow_messy.csv"

	out, err := run(t, "", with("import", "cmdb", csv)...)
	if err == nil || !strings.Contains(err.Error(), "5 of 9 rows were bad") {
		t.Fatalf("import with bad rows: err %v\n%s", err, out)
	}
	for _, want := range []string{
		"source cmdb: 9 rows, 5 bad",
		"records: 4 new, 0 changed, 0 unchanged, 0 removed",
		"workloads: 3 created",
		"Workload/web-01 created",
		"servicenow_messy.csv:4: no name (column name is empty)",
		`servicenow_messy.csv:5: column ip_address: bad IP address "10.10.3.300"`,
		`servicenow_messy.csv:6: column sys_updated_on: bad date "21/04/2026"`,
		"servicenow_messy.csv:7: 3 columns, the header has 10",
		`servicenow_messy.csv:10: duplicate key "a1b2c9" (column sys_id), first on line 8`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	out = mustRun(t, "", with("get", "workloads")...)
	if !strings.Contains(out, "web-01") || !strings.Contains(out, "app-01") || strings.Contains(out, "legacy-01") {
		t.Errorf("workloads after import:\n%s", out)
	}
	// The same file again changes nothing (and still reports its bad rows).
	out, _ = run(t, "", with("import", "cmdb", csv)...)
	if !strings.Contains(out, "0 new, 0 changed, 4 unchanged") || !strings.Contains(out, "workloads: 0 created, 0 updated, 0 deleted") {
		t.Errorf("second import:\n%s", out)
	}

	url, user, pw := simVCenter(t, "10.10.1.10") // web-01's address in the CMDB
	pwFile := filepath.Join(t.TempDir(), "vc.pass")
	os.WriteFile(pwFile, []byte(pw+"\n"), 0o600)
	out = mustRun(t, "", with("source", "add", "vcenter", "vc1", "--url", url, "--user", user, "--password-file", pwFile, "--insecure", "--interval", "0")...)
	if !strings.Contains(out, "source vc1 added") {
		t.Errorf("source add:\n%s", out)
	}
	out = mustRun(t, "", with("source", "sync", "vc1")...)
	for _, want := range []string{"records: 4 new", "Workload/dc0-h0-vm0 created", "Workload/web-01 deleted", "ip 10.10.1.10", "vc1 (vcenter)"} {
		if !strings.Contains(out, want) {
			t.Errorf("sync output lacks %q:\n%s", want, out)
		}
	}

	out = mustRun(t, "", with("source", "conflicts", "-o", "json")...)
	var cs []api.Conflict
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var ipc *api.Conflict
	for i := range cs {
		if cs[i].Subject == "ip 10.10.1.10" {
			ipc = &cs[i]
		}
	}
	if ipc == nil || len(ipc.Claims) != 2 {
		t.Fatalf("no conflict on 10.10.1.10: %+v", cs)
	}
	won, lost := ipc.Claims[0], ipc.Claims[1]
	if !won.Used || won.Source != "vc1" || won.Kind != "vcenter" || won.Workload != "dc0-h0-vm0" || won.Age == "" ||
		!strings.Contains(won.Reason, "observed") {
		t.Errorf("used claim %+v", won)
	}
	if lost.Used || lost.Source != "cmdb" || lost.Workload != "web-01" || lost.Key != "a1b2c3" || lost.Age == "" || lost.Observed == nil ||
		!strings.Contains(lost.Reason, "claimed for workload dc0-h0-vm0 by vc1") {
		t.Errorf("losing claim %+v", lost)
	}
	out = mustRun(t, "", with("source", "conflicts")...)
	if !strings.Contains(out, "ip 10.10.1.10") || !strings.Contains(out, "not used") || !strings.Contains(out, "cmdb (cmdb)") && !strings.Contains(out, "cmdb") {
		t.Errorf("conflicts table:\n%s", out)
	}

	out = mustRun(t, "", with("describe", "workload", "dc0-h0-vm0")...)
	for _, want := range []string{"app: shop", "tier: web", "Facts:", "tag.app", "vc1 (vcenter)", "folder", "/DC0/vm"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}
	out = mustRun(t, "", with("source", "facts", "web-01")...)
	if !strings.Contains(out, "web-01 is not a workload") || !strings.Contains(out, "no address is left") {
		t.Errorf("facts of the losing name:\n%s", out)
	}
	out = mustRun(t, "", with("source", "list")...)
	if !strings.Contains(out, "vc1") || !strings.Contains(out, "(imported)") {
		t.Errorf("source list:\n%s", out)
	}
	out = mustRun(t, "", with("audit", "--object", "Source/vc1")...)
	if !strings.Contains(out, "sync") || !strings.Contains(out, "source.create") {
		t.Errorf("audit:\n%s", out)
	}

	// A vCenter that cannot be reached: the error is recorded, the facts
	// of the last good sync stay.
	mustRun(t, "", with("source", "add", "vcenter", "down", "--url", "https://127.0.0.1:1/sdk", "--interval", "0")...)
	if out, err := run(t, "", with("source", "sync", "down")...); err == nil || !strings.Contains(err.Error(), "vcenter down") {
		t.Errorf("sync of an unreachable vCenter: %v\n%s", err, out)
	}
	out = mustRun(t, "", with("source", "list", "-o", "json")...)
	var srcs []api.Source
	json.Unmarshal([]byte(out), &srcs)
	for _, s := range srcs {
		if s.Name == "down" && (s.LastError == "" || s.LastSync == nil) {
			t.Errorf("failed sync not recorded: %+v", s)
		}
		if s.Name == "vc1" && s.Records != 4 {
			t.Errorf("vc1 records %d", s.Records)
		}
	}

	// Removing the vCenter gives the address back to the CMDB's name.
	out = mustRun(t, "", with("source", "delete", "vc1")...)
	if !strings.Contains(out, "Workload/dc0-h0-vm0 deleted") || !strings.Contains(out, "Workload/web-01 created") || !strings.Contains(out, "4 removed") {
		t.Errorf("source delete:\n%s", out)
	}
}

func TestImportCMDBFlagsAndDryRun(t *testing.T) {
	conn := startManager(t)
	with := func(args ...string) []string { return append(args, conn...) }
	data := "host;addr\n" // not a mapping the file can meet
	if _, err := run(t, data, with("import", "cmdb", "-", "--map", "name")...); err == nil || !strings.Contains(err.Error(), "FIELD=COLUMN") {
		t.Errorf("bad --map: %v", err)
	}
	csv := "U_Hostname,addr,u_app\nweb-1,10.0.0.1,shop\n"
	out := mustRun(t, csv, with("import", "cmdb", "-", "--format", "csv", "--map", "name=u_hostname,ip=addr,tag.app=u_app", "--source", "crm", "--dry-run")...)
	if !strings.Contains(out, "dry run") || !strings.Contains(out, "Workload/web-1 created") {
		t.Errorf("dry run:\n%s", out)
	}
	if out := mustRun(t, "", with("get", "workloads")...); strings.Contains(out, "web-1") {
		t.Errorf("a dry run created a workload:\n%s", out)
	}
	_, err := run(t, "name,ip_address\n", with("import", "cmdb", "-", "--map", "ip=nope")...)
	if err == nil || !strings.Contains(err.Error(), `no column "nope" for ip`) {
		t.Errorf("missing mapped column: %v", err)
	}
	out = mustRun(t, csv, with("import", "cmdb", "-", "--map", "name=u_hostname,ip=addr,tag.app=u_app", "-o", "json")...)
	var res api.InventoryResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Created) != 1 || res.Source != "cmdb" {
		t.Errorf("json result %+v %v\n%s", res, err, out)
	}
}
