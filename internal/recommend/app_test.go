package recommend

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// shopAppConns are the shop's connections as agents with L7 rules report
// them: the internet's HTTPS and the jump host's SSH identified, the web
// tier's calls to the API on 8080 identified as HTTP for some (those an L7
// rule concerned) and not for the others.
func shopAppConns() []tconn {
	cs := shopConns()
	for i := range cs {
		c := &cs[i]
		switch {
		case c.dport == 443 && c.dst == "10.0.1.1":
			c.app = "APP_HTTPS"
		case c.dport == 22:
			c.app = "APP_SSH"
		case c.dport == 8080 && c.sport%2 == 0:
			c.app = "APP_HTTP"
		}
	}
	return cs
}

// existingSetWithSSH has a profile for SSH the draft should reuse, and one
// with a version condition it must not.
func existingSetWithSSH() *policy.Set {
	s := existingSet()
	s.Put(&policy.ContextProfile{Header: policy.Header{Kind: policy.KindContextProfile, Metadata: policy.Metadata{Name: "ssh"}},
		Spec: policy.ContextProfileSpec{Apps: []policy.AppMatch{{Name: "APP_SSH"}}}})
	s.Put(&policy.ContextProfile{Header: policy.Header{Kind: policy.KindContextProfile, Metadata: policy.Metadata{Name: "modern-https"}},
		Spec: policy.ContextProfileSpec{Apps: []policy.AppMatch{{Name: "APP_HTTPS", MinVersion: "1.2"}}}})
	return s
}

// TestAppRules: where connections carried an AppID, the draft's rule names
// it through a ContextProfile, so the draft allows the application and not
// merely its port; connections without one keep a port rule.
func TestAppRules(t *testing.T) {
	inv, existing := shopInventory(), existingSetWithSSH()
	d, err := Recommend(Input{Inventory: inv, Existing: existing, Flows: records(shopAppConns()), Scope: `app == "shop"`}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range d.Profiles {
		names = append(names, p.Metadata.Name)
	}
	// HTTP to the API was seen unidentified on the same port too: the
	// port rule covers it, no profile for it.
	if !slices.Equal(names, []string{"app-https"}) || !slices.Contains(d.Reused, "ssh") {
		t.Errorf("new profiles %v, reused %v: want app-https new (modern-https has a version condition), ssh reused", names, d.Reused)
	}
	ev := compiled(t, inv, existing, d)
	jump, web, api := netip.MustParseAddr("10.0.7.7"), netip.MustParseAddr("10.0.1.1"), netip.MustParseAddr("10.0.2.1")
	for _, tt := range []struct {
		name     string
		f        eval.Flow
		want     policy.Action
		profiled bool
	}{
		{"ssh identified", eval.Flow{Src: jump, Dst: web, Proto: 6, Port: 22, App: "APP_SSH"}, policy.ActionAllow, true},
		{"something else on port 22", eval.Flow{Src: jump, Dst: web, Proto: 6, Port: 22, App: "APP_HTTP"}, policy.ActionDrop, false},
		{"https from outside", eval.Flow{Src: netip.MustParseAddr("203.0.113.10"), Dst: web, Proto: 6, Port: 443, App: "APP_HTTPS", TLSVersion: "1.3"}, policy.ActionAllow, true},
		{"http to the api", eval.Flow{Src: web, Dst: api, Proto: 6, Port: 8080, App: "APP_HTTP"}, policy.ActionAllow, false},
		{"uninspected to the api", eval.Flow{Src: web, Dst: api, Proto: 6, Port: 8080}, policy.ActionAllow, false},
	} {
		tt.f.ICMPType, tt.f.ICMPCode = -1, -1
		dec := ev.Evaluate(tt.f)
		if dec.Verdict != tt.want {
			t.Errorf("%s: %s by %s, want %s", tt.name, dec.Verdict, dec.Rule, tt.want)
			continue
		}
		if tt.want != policy.ActionAllow {
			continue
		}
		r := ruleNamed(d, dec.Rule)
		if r == nil || (len(r.Profiles) > 0) != tt.profiled {
			t.Errorf("%s: decided by %s (%+v), want a rule with a profile: %v", tt.name, dec.Rule, r, tt.profiled)
		}
	}
}

func ruleNamed(d *Draft, id string) *policy.Rule {
	for i := range d.Policy.Spec.Rules {
		if d.Policy.Metadata.Name+"/"+d.Policy.Spec.Rules[i].Name == id {
			return &d.Policy.Spec.Rules[i]
		}
	}
	return nil
}

// TestIncrementalApps: a second run over the same connections adds
// nothing: the profile rules of the first cover the identified ones.
func TestIncrementalApps(t *testing.T) {
	inv := shopInventory()
	in := Input{Inventory: inv, Existing: existingSetWithSSH(), Flows: records(shopAppConns()), Scope: `app == "shop"`}
	d, err := Recommend(in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	next := in.Existing.Clone()
	for _, o := range d.Objects() {
		next.Put(o)
	}
	in.Existing = next
	d2, err := Recommend(in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(d2.Changes.Added) != 0 || len(d2.Changes.Stale) != 0 {
		t.Errorf("second run: added %v, stale %v; want nothing", d2.Changes.Added, d2.Changes.Stale)
	}
}
