// Package vcenter reads a vCenter's virtual machines as inventory records:
// name, instance UUID, addresses from VMware Tools' guest info, folder path,
// and vSphere tags (category name -> tag key, tag name -> value).
package vcenter

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/bulkhead/bulkhead/internal/inventory"
	"github.com/bulkhead/bulkhead/internal/tagexpr"
)

// Config says which vCenter to read and how.
type Config struct {
	// Source names the records' source.
	Source string
	// URL is https://HOST[/sdk] or just HOST.
	URL      string
	User     string
	Password string
	// Insecure skips verification of the vCenter's certificate.
	Insecure bool
}

// Attributes a VM record carries besides name, IPs and tags.
const (
	AttrFolder     = "folder"
	AttrPowerState = "powerState"
	AttrOS         = inventory.AttrOS
)

// Result of a sync.
type Result struct {
	Records []inventory.Record
	// Skipped says what was left out and why: VMs whose name cannot be a
	// workload name, tag categories that cannot be tag keys.
	Skipped []string
}

// vmProps are the VM properties read, in one round trip.
var vmProps = []string{
	"name", "parent", "config.instanceUuid", "config.uuid", "config.template", "config.guestFullName",
	"guest.ipAddress", "guest.net", "guest.guestFullName", "runtime.powerState",
}

// Sync logs in, reads every VM with its folder and tags, and logs out.
// Every record is observed at now.
func Sync(ctx context.Context, cfg Config, now time.Time) (*Result, error) {
	u, err := soap.ParseURL(cfg.URL)
	if err != nil || u == nil {
		return nil, fmt.Errorf("vcenter %s: url %q: want https://HOST[/sdk]", cfg.Source, cfg.URL)
	}
	if cfg.User != "" {
		u.User = url.UserPassword(cfg.User, cfg.Password)
	}
	where := fmt.Sprintf("vcenter %s (%s)", cfg.Source, u.Host)
	c, err := govmomi.NewClient(ctx, u, cfg.Insecure)
	if err != nil {
		return nil, fmt.Errorf("%s: login: %w", where, err)
	}
	defer c.Logout(context.WithoutCancel(ctx))

	vm, err := view.NewManager(c.Client).CreateContainerView(ctx, c.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	defer vm.Destroy(context.WithoutCancel(ctx))
	var vms []mo.VirtualMachine
	if err := vm.Retrieve(ctx, []string{"VirtualMachine"}, vmProps, &vms); err != nil {
		return nil, fmt.Errorf("%s: read VMs: %w", where, err)
	}
	paths, err := folderPaths(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("%s: read folders: %w", where, err)
	}

	rc := rest.NewClient(c.Client)
	if err := rc.Login(ctx, u.User); err != nil {
		return nil, fmt.Errorf("%s: tags API login: %w", where, err)
	}
	defer rc.Logout(context.WithoutCancel(ctx))
	res := &Result{}
	vmTags, err := readTags(ctx, tags.NewManager(rc), vms, res)
	if err != nil {
		return nil, fmt.Errorf("%s: read tags: %w", where, err)
	}

	for i := range vms {
		v := &vms[i]
		if v.Config != nil && v.Config.Template {
			continue
		}
		name, err := inventory.WorkloadName(v.Name)
		if err != nil {
			res.Skipped = append(res.Skipped, fmt.Sprintf("VM %s (%s): %v", v.Name, v.Self.Value, err))
			continue
		}
		r := inventory.Record{
			Source: cfg.Source, Kind: inventory.KindVCenter, Key: vmKey(v), Name: name,
			IPs: guestIPs(v), Tags: vmTags[v.Self.Value], Observed: now, Attrs: map[string]string{},
		}
		if v.Parent != nil {
			if p := paths[v.Parent.Value]; p != "" {
				r.Attrs[AttrFolder] = p
			}
		}
		if os := guestOS(v); os != "" {
			r.Attrs[AttrOS] = os
		}
		if ps := string(v.Runtime.PowerState); ps != "" {
			r.Attrs[AttrPowerState] = ps
		}
		res.Records = append(res.Records, r)
	}
	slices.SortFunc(res.Records, func(a, b inventory.Record) int { return strings.Compare(a.Key, b.Key) })
	return res, nil
}

// vmKey is the instance UUID (stable across renames and moves), else the
// BIOS UUID, else the managed object id.
func vmKey(v *mo.VirtualMachine) string {
	if v.Config != nil {
		if v.Config.InstanceUuid != "" {
			return v.Config.InstanceUuid
		}
		if v.Config.Uuid != "" {
			return v.Config.Uuid
		}
	}
	return v.Self.Value
}

func guestOS(v *mo.VirtualMachine) string {
	if v.Guest != nil && v.Guest.GuestFullName != "" {
		return v.Guest.GuestFullName
	}
	if v.Config != nil {
		return v.Config.GuestFullName
	}
	return ""
}

// guestIPs are guest.ipAddress and every guest.net[].ipAddress, without
// link-local addresses (every IPv6 NIC has one; no peer reaches it).
func guestIPs(v *mo.VirtualMachine) []string {
	if v.Guest == nil {
		return nil
	}
	all := []string{v.Guest.IpAddress}
	for _, n := range v.Guest.Net {
		all = append(all, n.IpAddress...)
	}
	var out []string
	for _, s := range all {
		a, err := netip.ParseAddr(s)
		if err != nil || a.IsLinkLocalUnicast() || a.IsLoopback() || a.IsUnspecified() || a.Zone() != "" {
			continue
		}
		if ip := a.Unmap().String(); !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	return out
}

// folderPaths maps each folder and datacenter to its inventory path, such
// as /DC0/vm/apps (the root folder is left out).
func folderPaths(ctx context.Context, c *govmomi.Client) (map[string]string, error) {
	v, err := view.NewManager(c.Client).CreateContainerView(ctx, c.ServiceContent.RootFolder, []string{"Folder", "Datacenter"}, true)
	if err != nil {
		return nil, err
	}
	defer v.Destroy(context.WithoutCancel(ctx))
	var folders []mo.Folder
	if err := v.Retrieve(ctx, []string{"Folder"}, []string{"name", "parent"}, &folders); err != nil {
		return nil, err
	}
	var dcs []mo.Datacenter
	if err := v.Retrieve(ctx, []string{"Datacenter"}, []string{"name", "parent"}, &dcs); err != nil {
		return nil, err
	}
	type node struct {
		name   string
		parent *types.ManagedObjectReference
	}
	nodes := map[string]node{}
	for _, f := range folders {
		nodes[f.Self.Value] = node{f.Name, f.Parent}
	}
	for _, d := range dcs {
		nodes[d.Self.Value] = node{d.Name, d.Parent}
	}
	root := c.ServiceContent.RootFolder.Value
	paths := map[string]string{}
	for id := range nodes {
		var parts []string
		for cur, hops := id, 0; cur != "" && cur != root && hops < 64; hops++ {
			n, ok := nodes[cur]
			if !ok {
				break
			}
			parts = append(parts, n.name)
			cur = ""
			if n.parent != nil {
				cur = n.parent.Value
			}
		}
		slices.Reverse(parts)
		paths[id] = "/" + strings.Join(parts, "/")
	}
	return paths, nil
}

// readTags returns each VM's tags by managed object id: category name ->
// tag name. Several tags of one category are joined by "," in name order.
func readTags(ctx context.Context, m *tags.Manager, vms []mo.VirtualMachine, res *Result) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	if len(vms) == 0 {
		return out, nil
	}
	cats, err := m.GetCategories(ctx)
	if err != nil {
		return nil, err
	}
	catName := map[string]string{}
	for _, c := range cats {
		if !tagexpr.ValidKey(c.Name) {
			res.Skipped = append(res.Skipped, fmt.Sprintf("tag category %q: cannot be a tag key (letters, digits and _ . - /, starting with a letter or _)", c.Name))
			continue
		}
		catName[c.ID] = c.Name
	}
	refs := make([]mo.Reference, len(vms))
	for i := range vms {
		refs[i] = vms[i].Self
	}
	attached, err := m.GetAttachedTagsOnObjects(ctx, refs)
	if err != nil {
		return nil, err
	}
	for _, a := range attached {
		vals := map[string][]string{}
		for _, t := range a.Tags {
			if k, ok := catName[t.CategoryID]; ok {
				vals[k] = append(vals[k], t.Name)
			}
		}
		if len(vals) == 0 {
			continue
		}
		m := map[string]string{}
		for k, vs := range vals {
			slices.Sort(vs)
			m[k] = strings.Join(vs, ",")
		}
		out[a.ObjectID.Reference().Value] = m
	}
	return out, nil
}

// ErrNoURL is returned by Check for a config without a URL.
var ErrNoURL = errors.New("no URL")

// Check validates a config without connecting.
func Check(cfg Config) error {
	if strings.TrimSpace(cfg.URL) == "" {
		return ErrNoURL
	}
	u, err := soap.ParseURL(cfg.URL)
	if err != nil || u == nil || u.Host == "" {
		return fmt.Errorf("url %q: want https://HOST[/sdk]", cfg.URL)
	}
	if u.Scheme != "https" {
		return fmt.Errorf("url %q: vCenter is reached over https", cfg.URL)
	}
	return nil
}
