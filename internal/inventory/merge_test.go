package inventory

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/policy"
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func wl(name string, ips []string, tags map[string]string, facts map[string]string, host, iface string) *policy.Workload {
	return &policy.Workload{
		Header: policy.Header{APIVersion: policy.APIVersion, Kind: policy.KindWorkload, Metadata: policy.Metadata{Name: name}},
		Spec:   policy.WorkloadSpec{IPs: ips, Tags: tags, Facts: facts, Host: host, Interface: iface},
	}
}

func cmdbRow(key, name string, age time.Duration, ips []string, tags map[string]string) Record {
	return Record{Source: "cmdb", Kind: KindCMDB, Key: key, Name: name, IPs: ips, Tags: tags, Observed: now.Add(-age)}
}

func vcVM(key, name string, age time.Duration, ips []string, tags map[string]string) Record {
	return Record{Source: "vc1", Kind: KindVCenter, Key: key, Name: name, IPs: ips, Tags: tags, Observed: now.Add(-age)}
}

// apply returns the workloads after a merge's changes.
func apply(old []*policy.Workload, r Result) map[string]*policy.Workload {
	m := map[string]*policy.Workload{}
	for _, w := range old {
		m[w.Metadata.Name] = w
	}
	for _, w := range r.Upserts {
		m[w.Metadata.Name] = w
	}
	for _, n := range r.Deletes {
		delete(m, n)
	}
	return m
}

func fact(t *testing.T, r Result, workload, source, attr string) Fact {
	t.Helper()
	for _, f := range r.Facts {
		if f.Workload == workload && f.Source == source && f.Attribute == attr {
			return f
		}
	}
	t.Fatalf("no fact %s %s %s in %+v", workload, source, attr, r.Facts)
	return Fact{}
}

func TestMerge(t *testing.T) {
	agentWl := wl("hv1-eth0", []string{"10.0.0.5"}, nil, map[string]string{"source": "agent", "mac": "02:00:00:00:00:01"}, "hv1", "eth0")
	for _, tc := range []struct {
		name    string
		records []Record
		old     []*policy.Workload
		check   func(t *testing.T, r Result, after map[string]*policy.Workload)
	}{{
		name:    "a CMDB row makes a workload with its tags",
		records: []Record{{Source: "cmdb", Kind: KindCMDB, Key: "s1", Name: "db-1", IPs: []string{"10.0.0.9"}, Tags: map[string]string{"app": "shop"}, Attrs: map[string]string{"owner": "alice", "os": "Linux"}, Observed: now}},
		check: func(t *testing.T, r Result, after map[string]*policy.Workload) {
			w := after["db-1"]
			if w == nil || !slices.Equal(w.Spec.IPs, []string{"10.0.0.9"}) || w.Spec.Tags["app"] != "shop" || w.Spec.OS != "Linux" ||
				w.Spec.Facts["owner"] != "alice" || w.Spec.Facts[FactSource] != SourceInventory || w.Spec.Facts[FactManagedTags] != "app" {
				t.Fatalf("db-1 = %+v", w)
			}
			if f := fact(t, r, "db-1", "cmdb", "tag.app"); !f.Used {
				t.Errorf("tag fact not used: %+v", f)
			}
		},
	}, {
		name:    "an agent's binding keeps the workload and its name; the CMDB row tags it",
		records: []Record{cmdbRow("s1", "db-1", time.Hour, []string{"10.0.0.5", "10.0.0.6"}, map[string]string{"app": "shop"})},
		old:     []*policy.Workload{agentWl},
		check: func(t *testing.T, r Result, after map[string]*policy.Workload) {
			if _, ok := after["db-1"]; ok || len(after) != 1 {
				t.Fatalf("the CMDB name made a second workload: %v", slices.Collect(maps.Keys(after)))
			}
			w := after["hv1-eth0"]
			if w.Spec.Tags["app"] != "shop" || !slices.Equal(w.Spec.IPs, []string{"10.0.0.5"}) || w.Spec.Host != "hv1" || w.Spec.Facts["source"] != "agent" {
				t.Fatalf("hv1-eth0 = %+v", w.Spec)
			}
			if f := fact(t, r, "hv1-eth0", "cmdb", "name"); f.Used || !strings.Contains(f.Reason, "bound by an agent") {
				t.Errorf("name fact: %+v", f)
			}
			if f := fact(t, r, "hv1-eth0", "agent", "ip"); !f.Used || f.Key != "hv1/eth0" {
				t.Errorf("agent ip fact: %+v", f)
			}
			for _, f := range r.FactsOf("hv1-eth0") {
				if f.Value == "10.0.0.6" && (f.Used || !strings.Contains(f.Reason, "not added")) {
					t.Errorf("an imported address was added to an agent's workload: %+v", f)
				}
			}
		},
	}, {
		name: "a fresher vCenter VM wins an address the CMDB gave another name",
		records: []Record{
			cmdbRow("s1", "crm-db", 10*24*time.Hour, []string{"10.0.0.7"}, nil),
			vcVM("uuid-1", "web-9", time.Minute, []string{"10.0.0.7"}, nil),
		},
		check: func(t *testing.T, r Result, after map[string]*policy.Workload) {
			if after["crm-db"] != nil || after["web-9"] == nil {
				t.Fatalf("workloads: %v", slices.Collect(maps.Keys(after)))
			}
			if len(r.Conflicts) != 1 || r.Conflicts[0].Subject != "ip 10.0.0.7" {
				t.Fatalf("conflicts: %+v", r.Conflicts)
			}
			c := r.Conflicts[0]
			if c.Claims[0].Source != "vc1" || !c.Claims[0].Used || c.Claims[1].Source != "cmdb" || c.Claims[1].Used || c.Claims[1].Workload != "crm-db" {
				t.Errorf("claims: %+v", c.Claims)
			}
			if !strings.Contains(c.Claims[0].Reason, "observed") {
				t.Errorf("winner reason: %q", c.Claims[0].Reason)
			}
			if f := fact(t, r, "crm-db", "cmdb", "name"); f.Used || !strings.Contains(f.Reason, "no address") {
				t.Errorf("crm-db name fact: %+v", f)
			}
		},
	}, {
		name: "a stale CMDB row loses a tag to a fresh one; both facts are kept",
		records: []Record{
			cmdbRow("s1", "web-1", 40*24*time.Hour, []string{"10.0.1.1"}, map[string]string{"app": "crm", "env": "prod"}),
			vcVM("uuid-1", "web-1", time.Hour, []string{"10.0.1.1"}, map[string]string{"app": "shop"}),
		},
		check: func(t *testing.T, r Result, after map[string]*policy.Workload) {
			w := after["web-1"]
			if w.Spec.Tags["app"] != "shop" || w.Spec.Tags["env"] != "prod" {
				t.Fatalf("tags %v", w.Spec.Tags)
			}
			f := fact(t, r, "web-1", "cmdb", "tag.app")
			if f.Used || !f.Stale || !strings.Contains(f.Reason, "stale") {
				t.Errorf("stale fact: %+v", f)
			}
			if len(r.Conflicts) != 1 || r.Conflicts[0].Subject != "web-1 tag.app" || r.Conflicts[0].Claims[0].Value != "shop" {
				t.Errorf("conflicts: %+v", r.Conflicts)
			}
		},
	}, {
		name:    "an operator's tag beats imported ones",
		records: []Record{cmdbRow("s1", "web-1", 0, []string{"10.0.1.1", "10.0.1.2"}, map[string]string{"app": "crm", "tier": "web"})},
		old:     []*policy.Workload{wl("web-1", []string{"10.0.1.1"}, map[string]string{"app": "shop"}, nil, "", "")},
		check: func(t *testing.T, r Result, after map[string]*policy.Workload) {
			w := after["web-1"]
			if w.Spec.Tags["app"] != "shop" || w.Spec.Tags["tier"] != "web" || !slices.Equal(w.Spec.IPs, []string{"10.0.1.1"}) {
				t.Fatalf("web-1 = %+v", w.Spec)
			}
			if f := fact(t, r, "web-1", "cmdb", "tag.app"); f.Used || !strings.Contains(f.Reason, "operator") {
				t.Errorf("fact: %+v", f)
			}
		},
	}, {
		name: "equally fresh: vCenter over the CMDB",
		records: []Record{
			cmdbRow("s1", "a", time.Hour, []string{"10.0.2.1"}, nil),
			vcVM("u", "b", time.Hour, []string{"10.0.2.1"}, nil),
		},
		check: func(t *testing.T, r Result, after map[string]*policy.Workload) {
			if after["b"] == nil || after["a"] != nil {
				t.Fatalf("workloads: %v", slices.Collect(maps.Keys(after)))
			}
			if !strings.Contains(r.Conflicts[0].Claims[0].Reason, "vcenter ranks above cmdb") {
				t.Errorf("reason: %q", r.Conflicts[0].Claims[0].Reason)
			}
		},
	}, {
		name: "a workload the merge made goes when no source describes it; an agent-bound one only loses its imported tags",
		old: []*policy.Workload{
			wl("gone", []string{"10.0.3.1"}, map[string]string{"app": "x"}, map[string]string{"source": "inventory", "inventory.tags": "app"}, "", ""),
			wl("bound", []string{"10.0.3.2"}, map[string]string{"app": "x", "keep": "y"}, map[string]string{"source": "inventory", "inventory.tags": "app"}, "hv1", "eth1"),
		},
		check: func(t *testing.T, r Result, after map[string]*policy.Workload) {
			if !slices.Equal(r.Deletes, []string{"gone"}) {
				t.Errorf("deletes %v", r.Deletes)
			}
			b := after["bound"]
			if b == nil || !maps.Equal(b.Spec.Tags, map[string]string{"keep": "y"}) || b.Spec.Facts[FactManagedTags] != "" {
				t.Errorf("bound = %+v", b)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := Merge(tc.records, tc.old, now, Policy{})
			after := apply(tc.old, r)
			tc.check(t, r, after)
			// A second merge over its own result changes nothing.
			again := Merge(tc.records, slices.Collect(maps.Values(after)), now, Policy{})
			if len(again.Upserts)+len(again.Deletes) != 0 {
				t.Errorf("second merge changes %d, deletes %v: %+v", len(again.Upserts), again.Deletes, again.Upserts)
			}
		})
	}
}

func TestMergeOrderIndependent(t *testing.T) {
	recs := []Record{
		cmdbRow("s1", "a", time.Hour, []string{"10.0.2.1"}, map[string]string{"app": "x"}),
		cmdbRow("s2", "b", time.Hour, []string{"10.0.2.1"}, map[string]string{"app": "y"}),
		vcVM("u1", "a", time.Hour, []string{"10.0.2.2"}, map[string]string{"app": "z"}),
	}
	first := Merge(recs, nil, now, Policy{})
	slices.Reverse(recs)
	second := Merge(recs, nil, now, Policy{})
	if len(first.Upserts) != len(second.Upserts) {
		t.Fatalf("%d vs %d upserts", len(first.Upserts), len(second.Upserts))
	}
	for i := range first.Upserts {
		if !sameWorkload(first.Upserts[i], second.Upserts[i]) {
			t.Errorf("order changed the result: %+v vs %+v", first.Upserts[i].Spec, second.Upserts[i].Spec)
		}
	}
}

func TestWorkloadName(t *testing.T) {
	for in, want := range map[string]string{"SRV_DB 01": "srv-db-01", " web-1.corp ": "web-1.corp", "-x-": "x"} {
		if got, err := WorkloadName(in); err != nil || got != want {
			t.Errorf("WorkloadName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "  ", "db/1", "---", "é"} {
		if _, err := WorkloadName(bad); err == nil {
			t.Errorf("WorkloadName(%q) accepted", bad)
		}
	}
}

func TestSplitIPs(t *testing.T) {
	got, err := SplitIPs("10.0.0.1, 10.0.0.2;fd00::1  10.0.0.1")
	if err != nil || !slices.Equal(got, []string{"10.0.0.1", "10.0.0.2", "fd00::1"}) {
		t.Errorf("SplitIPs = %v, %v", got, err)
	}
	for _, bad := range []string{"10.0.0.256", "10.0.0.0/24", "fe80::1%eth0", "0.0.0.0"} {
		if _, err := SplitIPs(bad); err == nil {
			t.Errorf("SplitIPs(%q) accepted", bad)
		}
	}
}
