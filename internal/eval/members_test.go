package eval

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	"github.com/bulkhead/bulkhead/internal/policy"
)

func TestMembers(t *testing.T) {
	s := newSet(drop,
		wl("w1", "role=x", "10.1.2.3", "10.1.2.4"),
		wl("w2", "", "192.168.0.1"),
		wl("w3", "role=x", "10.200.0.1", "fd00::1"),
		wl("w4", "role=y", "10.1.2.200"),
		grp("net24", policy.GroupSpec{IPs: []string{"10.1.2.0/24"}}),
		grp("level1", policy.GroupSpec{Match: `role == "x"`}),
		grp("level2", policy.GroupSpec{Groups: []string{"level1"}, Users: []string{"bob"}}),
		grp("level3", policy.GroupSpec{Groups: []string{"level2", "net24"}}),
		grp("odd", policy.GroupSpec{IPs: []string{"10.5.0.1", "10.5.0.2", "10.5.0.3"}}),
		grp("names", policy.GroupSpec{FQDNs: []string{"*.example.com", "api.example.com", "db.lab.test"}}),
		grp("wide", policy.GroupSpec{FQDNs: []string{"*.com"}, Groups: []string{"names"}}),
		grp("people", policy.GroupSpec{Users: []string{"alice"}}),
		grp("all-people", policy.GroupSpec{Groups: []string{"people", "level2"}}),
		section("p", policy.CategoryApplication, 0, nil,
			rl("r", "level3", "10.0.0.0/8", "", allow)),
	)
	e := mustCompile(t, s)
	type out struct {
		workloads []string
		prefixes  []string
		users     []string
		fqdns     []string
	}
	flat := func(m Members) out {
		var o out
		for _, w := range m.Workloads {
			o.workloads = append(o.workloads, fmt.Sprintf("%s %v", w.Name, w.Addrs))
		}
		for _, p := range m.Prefixes {
			o.prefixes = append(o.prefixes, p.String())
		}
		o.users, o.fqdns = m.Users, m.FQDNs
		return o
	}
	for _, c := range []struct {
		group string
		want  out
	}{
		{"level1", out{workloads: []string{"w1 [10.1.2.3 10.1.2.4]", "w3 [10.200.0.1 fd00::1]"}}},
		// The /24 stays whole around w1 and w4; w4 is in it by address.
		{"level3", out{workloads: []string{"w1 [10.1.2.3 10.1.2.4]", "w3 [10.200.0.1 fd00::1]", "w4 [10.1.2.200]"},
			prefixes: []string{"10.1.2.0/24"}, users: []string{"bob"}}},
		{"net24", out{workloads: []string{"w1 [10.1.2.3 10.1.2.4]", "w4 [10.1.2.200]"}, prefixes: []string{"10.1.2.0/24"}}},
		{"odd", out{prefixes: []string{"10.5.0.1/32", "10.5.0.2/31"}}},
		{"names", out{fqdns: []string{"*.example.com", "db.lab.test"}}},
		{"wide", out{fqdns: []string{"*.com", "db.lab.test"}}},
		{"all-people", out{workloads: []string{"w1 [10.1.2.3 10.1.2.4]", "w3 [10.200.0.1 fd00::1]"}, users: []string{"alice", "bob"}}},
	} {
		m, ok := e.Members(c.group)
		if !ok {
			t.Errorf("Members(%s): no such group", c.group)
			continue
		}
		if got := flat(m); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Members(%s) = %+v, want %+v", c.group, got, c.want)
		}
	}
	for _, name := range []string{"nosuch", "10.0.0.0/8"} {
		if _, ok := e.Members(name); ok {
			t.Errorf("Members(%q) found a group", name)
		}
	}
}

func TestAppendRange(t *testing.T) {
	for _, c := range []struct {
		lo, hi string
		want   []string
	}{
		{"10.0.0.0", "10.0.0.255", []string{"10.0.0.0/24"}},
		{"10.0.0.1", "10.0.0.6", []string{"10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"}},
		{"0.0.0.0", "255.255.255.255", []string{"0.0.0.0/0"}},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", []string{"::/0"}},
		{"fd00::ffff", "fd00::1:0", []string{"fd00::ffff/128", "fd00::1:0/128"}},
	} {
		lo, hi := netip.MustParseAddr(c.lo), netip.MustParseAddr(c.hi)
		var got []string
		for _, p := range appendRange(nil, u128Of(lo), u128Of(hi), lo.Is4()) {
			got = append(got, p.String())
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s-%s: %v, want %v", c.lo, c.hi, got, c.want)
		}
	}
}
