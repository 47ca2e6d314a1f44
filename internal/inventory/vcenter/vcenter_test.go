package vcenter

import (
	"context"
	"crypto/tls"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/bulkhead/bulkhead/internal/inventory"

	_ "github.com/vmware/govmomi/vapi/simulator" // the tags API
)

// Lab is a simulated vCenter with TLS and the tags API; tests shape its
// VMs through the same APIs a vCenter administrator would use.
type lab struct {
	model  *simulator.Model
	server *simulator.Server
	client *govmomi.Client
	tags   *tags.Manager
	finder *find.Finder
}

func newLab(t *testing.T) *lab {
	t.Helper()
	m := simulator.VPX()
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	m.Service.TLS = new(tls.Config)
	m.Service.RegisterEndpoints = true // the vAPI (tags) simulator
	s := m.Service.NewServer()
	t.Cleanup(func() { s.Close(); m.Remove() })
	ctx := context.Background()
	c, err := govmomi.NewClient(ctx, s.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	rc := rest.NewClient(c.Client)
	if err := rc.Login(ctx, s.URL.User); err != nil {
		t.Fatal(err)
	}
	f := find.NewFinder(c.Client)
	dc, err := f.DefaultDatacenter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.SetDatacenter(dc)
	return &lab{model: m, server: s, client: c, tags: tags.NewManager(rc), finder: f}
}

func (l *lab) config(t *testing.T) Config {
	pw, _ := l.server.URL.User.Password()
	return Config{Source: "vc1", URL: "https://" + l.server.URL.Host + "/sdk", User: l.server.URL.User.Username(), Password: pw, Insecure: true}
}

func (l *lab) vm(t *testing.T, name string) *object.VirtualMachine {
	t.Helper()
	vm, err := l.finder.VirtualMachine(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

// Tag attaches category=tag to a VM, creating both as needed.
func (l *lab) tag(t *testing.T, vm *object.VirtualMachine, category, tag string) {
	t.Helper()
	ctx := context.Background()
	cat, err := l.tags.GetCategory(ctx, category)
	if err != nil {
		id, err := l.tags.CreateCategory(ctx, &tags.Category{Name: category, Cardinality: "MULTIPLE", AssociableTypes: []string{"VirtualMachine"}})
		if err != nil {
			t.Fatal(err)
		}
		if cat, err = l.tags.GetCategory(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	tg, err := l.tags.GetTagForCategory(ctx, tag, cat.ID)
	if err != nil {
		id, err := l.tags.CreateTag(ctx, &tags.Tag{Name: tag, CategoryID: cat.ID})
		if err != nil {
			t.Fatal(err)
		}
		if tg, err = l.tags.GetTag(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.tags.AttachTag(ctx, tg.ID, vm.Reference()); err != nil {
		t.Fatal(err)
	}
}

// guestIPs reports addresses as VMware Tools would: the primary one
// through guestinfo, more on the first NIC.
func (l *lab) guestIPs(t *testing.T, vm *object.VirtualMachine, primary string, more ...string) {
	t.Helper()
	ctx := context.Background()
	task, err := vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{
		ExtraConfig: []types.BaseOptionValue{&types.OptionValue{Key: "SET.guest.ipAddress", Value: primary}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if len(more) == 0 {
		return
	}
	sim := l.model.Map().Get(vm.Reference()).(*simulator.VirtualMachine)
	l.model.Map().WithLock(l.model.Service.Context, sim, func() {
		sim.Guest.Net[0].IpAddress = append(sim.Guest.Net[0].IpAddress, more...)
	})
}

func TestSync(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	web := l.vm(t, "DC0_H0_VM0")
	db := l.vm(t, "DC0_H0_VM1")
	l.tag(t, web, "app", "shop")
	l.tag(t, web, "tier", "web")
	l.tag(t, db, "app", "shop")
	l.tag(t, db, "tier", "db")
	l.tag(t, db, "backup", "daily")
	l.tag(t, db, "backup", "weekly")
	l.tag(t, db, "Cost Center", "42") // not a usable tag key
	l.guestIPs(t, web, "10.20.1.10", "fd00:20::10", "fe80::1")
	l.guestIPs(t, db, "10.20.3.10")

	// Move the database into a folder of its own.
	vmFolder, err := l.finder.Folder(ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	apps, err := vmFolder.CreateFolder(ctx, "apps")
	if err != nil {
		t.Fatal(err)
	}
	task, err := apps.MoveInto(ctx, []types.ManagedObjectReference{db.Reference()})
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}

	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	res, err := Sync(ctx, l.config(t), now)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]inventory.Record{}
	for _, r := range res.Records {
		got[r.Name] = r
	}
	if len(got) != 4 {
		t.Errorf("records for %d VMs, want the model's 4: %+v", len(got), res.Records)
	}
	w := got["dc0-h0-vm0"]
	if w.Kind != inventory.KindVCenter || w.Source != "vc1" || !w.Observed.Equal(now) || len(w.Key) < 32 {
		t.Errorf("web record %+v", w)
	}
	if !slices.Equal(w.IPs, []string{"10.20.1.10", "fd00:20::10"}) {
		t.Errorf("web IPs %v (link-local must be dropped)", w.IPs)
	}
	if w.Tags["app"] != "shop" || w.Tags["tier"] != "web" || w.Attrs[AttrFolder] != "/DC0/vm" || w.Attrs[AttrPowerState] != "poweredOn" {
		t.Errorf("web tags %v attrs %v", w.Tags, w.Attrs)
	}
	d := got["dc0-h0-vm1"]
	if !slices.Equal(d.IPs, []string{"10.20.3.10"}) || d.Tags["tier"] != "db" || d.Tags["backup"] != "daily,weekly" || d.Attrs[AttrFolder] != "/DC0/vm/apps" {
		t.Errorf("db record %+v", d)
	}
	if _, ok := d.Tags["Cost Center"]; ok || !slices.ContainsFunc(res.Skipped, func(s string) bool { return strings.Contains(s, "Cost Center") }) {
		t.Errorf("unusable category not skipped: tags %v, skipped %v", d.Tags, res.Skipped)
	}
	if other := got["dc0-h0-vm2"]; len(other.IPs) != 0 || len(other.Tags) != 0 {
		t.Errorf("untouched VM %+v", other)
	}
}

func TestSyncErrors(t *testing.T) {
	l := newLab(t)
	cfg := l.config(t)
	// The simulator takes any password; without a user no session is
	// made and reading the inventory must fail with a clear error.
	cfg.User, cfg.Password = "", ""
	_, err := Sync(context.Background(), cfg, time.Now())
	if err == nil || !strings.Contains(err.Error(), "vcenter vc1") {
		t.Errorf("sync without credentials: %v", err)
	}
	cfg = l.config(t)
	cfg.Insecure = false
	if _, err := Sync(context.Background(), cfg, time.Now()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("sync of a self-signed vCenter without --insecure: %v", err)
	}
	for _, bad := range []Config{{URL: ""}, {URL: "http://vc/sdk"}} {
		if err := Check(bad); err == nil {
			t.Errorf("Check(%+v) accepted", bad)
		}
	}
}
