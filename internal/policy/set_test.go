package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead/bulkhead/internal/ports"
)

// fill sets everything reachable from v to non-zero values that depend only
// on the sequence of calls, so two fills from the same seed are equal.
func fill(v reflect.Value, seed *int) {
	*seed++
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), seed)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), seed)
			}
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := 0; i < 2; i++ {
			fill(v.Index(i), seed)
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		for i := 0; i < 2; i++ {
			k := reflect.ValueOf(fmt.Sprintf("k%d", *seed+i)).Convert(v.Type().Key())
			e := reflect.New(v.Type().Elem()).Elem()
			fill(e, seed)
			v.SetMapIndex(k, e)
		}
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *seed))
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*seed))
	case reflect.Uint32:
		v.SetUint(uint64(*seed))
	case reflect.Bool:
		v.SetBool(true)
	default:
		panic("fill: " + v.Type().String())
	}
}

// mutate changes everything reachable from v in place.
func mutate(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			mutate(v.Elem())
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				mutate(v.Field(i))
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			mutate(v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			mutate(e)
			v.SetMapIndex(k, e)
		}
		v.SetMapIndex(reflect.ValueOf("added").Convert(v.Type().Key()), reflect.Zero(v.Type().Elem()))
	case reflect.String:
		v.SetString(v.String() + "!")
	case reflect.Int, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint32:
		v.SetUint(v.Uint() + 1)
	case reflect.Bool:
		v.SetBool(!v.Bool())
	}
}

func TestCloneIsDeep(t *testing.T) {
	var orig, want Set
	seed := 0
	fill(reflect.ValueOf(&orig).Elem(), &seed)
	seed = 0
	fill(reflect.ValueOf(&want).Elem(), &seed)
	c := orig.Clone()
	if !reflect.DeepEqual(c, &orig) {
		t.Fatal("Clone differs from the original")
	}
	mutate(reflect.ValueOf(c).Elem())
	if reflect.DeepEqual(c, &orig) {
		t.Fatal("mutate changed nothing; the test is broken")
	}
	if !reflect.DeepEqual(&orig, &want) {
		t.Fatal("changing the clone changed the original: some field is not deep-copied")
	}
	for _, o := range want.All() {
		cp := DeepCopyObject(o)
		mutate(reflect.ValueOf(cp))
		if reflect.DeepEqual(cp, o) {
			t.Errorf("%T: DeepCopyObject shares memory", o)
		}
	}
	if (*Set)(nil).Clone() != nil {
		t.Error("nil.Clone() != nil")
	}
}

func named[T any, PT interface {
	*T
	Object
}](name string) PT {
	o := PT(new(T))
	o.GetHeader().Metadata.Name = name
	return o
}

func TestSetPutGetDelete(t *testing.T) {
	s := &Set{} // nil maps must work too
	s.Put(named[Group]("b"))
	s.Put(named[Group]("a"))
	s.Put(named[Service]("svc"))
	s.Put(named[Workload]("w"))
	s.Put(named[ContextProfile]("cp"))
	s.Put(named[Policy]("p"))
	dr := named[DefaultRule](DefaultRuleName)
	dr.Spec.Action = ActionDrop
	s.Put(dr)

	if o, ok := s.Get(KindGroup, "a"); !ok || o.GetHeader().Metadata.Name != "a" {
		t.Errorf("Get(Group, a) = %v, %v", o, ok)
	}
	if _, ok := s.Get(KindGroup, "zz"); ok {
		t.Error("Get of a missing group succeeded")
	}
	if o, ok := s.Get(KindDefaultRule, DefaultRuleName); !ok || o != dr {
		t.Error("Get(DefaultRule) did not return the one put")
	}
	var keys []ObjectKey
	for _, o := range s.All() {
		keys = append(keys, KeyOf(o))
	}
	want := []ObjectKey{{KindWorkload, "w"}, {KindGroup, "a"}, {KindGroup, "b"}, {KindService, "svc"},
		{KindContextProfile, "cp"}, {KindPolicy, "p"}, {KindDefaultRule, "default"}}
	if !slices.Equal(keys, want) {
		t.Errorf("All() = %v, want %v", keys, want)
	}
	if !s.Delete(KindGroup, "a") || s.Delete(KindGroup, "a") {
		t.Error("Delete(Group, a) should succeed once")
	}
	if got := len(s.Objects(KindGroup)); got != 1 {
		t.Errorf("%d groups left, want 1", got)
	}
	if !s.Delete(KindDefaultRule, DefaultRuleName) || s.Default == nil || s.Default.Spec.Action != ActionAllow {
		t.Error("deleting the default rule should restore the built-in allow")
	}
	if s.Delete(KindPolicy, "nope") || s.Delete("Bogus", "p") {
		t.Error("Delete of something absent succeeded")
	}
}

func TestAssignRuleIDs(t *testing.T) {
	s := NewSet()
	p := named[Policy]("p")
	p.Spec.Rules = []Rule{{Name: "a"}, {Name: "b"}}
	q := named[Policy]("q")
	q.Spec.Rules = []Rule{{Name: "x"}}
	s.Put(q)
	s.Put(p)
	s.RuleIDs["gone/rule"] = 7
	n := uint32(100)
	next := func() uint32 { n++; return n }
	s.AssignRuleIDs(next)
	want := map[string]uint32{"p/a": 101, "p/b": 102, "q/x": 103}
	if !reflect.DeepEqual(s.RuleIDs, want) {
		t.Errorf("RuleIDs = %v, want %v", s.RuleIDs, want)
	}
	// Existing ids stay; a new rule gets a new id; a removed rule loses its.
	p.Spec.Rules = []Rule{{Name: "c"}, {Name: "b"}}
	s.AssignRuleIDs(next)
	want = map[string]uint32{"p/c": 104, "p/b": 102, "q/x": 103}
	if !reflect.DeepEqual(s.RuleIDs, want) {
		t.Errorf("RuleIDs = %v, want %v", s.RuleIDs, want)
	}
}

func TestRuleDefaults(t *testing.T) {
	r := Rule{Name: "r", Action: ActionAllow}
	d := r.Defaults()
	if d.Direction != DirectionInOut || d.Mode != ModeEnforce {
		t.Errorf("Defaults() = %+v", d)
	}
	if r.Direction != "" || r.Mode != "" {
		t.Error("Defaults changed the rule itself")
	}
	if got := (Rule{Direction: DirectionIn, Mode: ModeStaged}).Defaults(); got.Direction != DirectionIn || got.Mode != ModeStaged {
		t.Errorf("Defaults() overwrote given values: %+v", got)
	}
}

func TestValidateWithoutOrigin(t *testing.T) {
	s := NewSet()
	g := named[Group]("web")
	g.Spec.Groups = []string{"web"}
	s.Put(g)
	s.Groups["alias"] = named[Group]("other")
	s.Default = nil
	got := s.Validate(nil).Error()
	want := strings.Join([]string{
		`DefaultRule "default": the set has no default rule`,
		`Group "other": metadata.name: stored under "alias" but named "other"`,
		`Group "web": spec.groups[0]: reference cycle: web -> web`,
	}, "\n")
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestApply(t *testing.T) {
	base := NewSet()
	base.Put(&Group{Header: Header{Metadata: Metadata{Name: "web"}}, Spec: GroupSpec{Match: `tier == "web"`}})
	docs, err := Decode("a.yaml", []byte(`apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: p}
spec: {category: Application, rules: [{name: r, sources: [web], action: allow}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Apply(base, docs)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get(KindPolicy, "p"); !ok {
		t.Error("applied policy missing")
	}
	if _, ok := base.Get(KindPolicy, "p"); ok {
		t.Error("Apply changed its base")
	}
	// The same object from two files is an error, located in both.
	more, _ := Decode("b.yaml", []byte("apiVersion: bulkhead.io/v1\nkind: Policy\nmetadata: {name: p}\nspec: {category: Application, rules: []}\n"))
	_, err = Apply(base, append(docs, more...))
	want := `b.yaml:1: document 1 (Policy "p"): Policy "p" is defined twice; first in a.yaml document 1 line 1`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	// A bad reference fails the whole apply.
	bad, _ := Decode("c.yaml", []byte("apiVersion: bulkhead.io/v1\nkind: Policy\nmetadata: {name: q}\nspec: {category: Application, rules: [{name: r, sources: [db], action: allow}]}\n"))
	s, err = Apply(base, bad)
	var l ErrorList
	if s != nil || !errors.As(err, &l) || len(l) != 1 || l[0].Line != 4 || l[0].Column != 59 {
		t.Errorf("got %v, %v", s, err)
	}
}

func TestParsePeer(t *testing.T) {
	tests := []struct {
		in      string
		group   string
		prefix  string
		wantErr string
	}{
		{in: "web", group: "web"},
		{in: "web-1.prod", group: "web-1.prod"},
		{in: "10.0.0.1", prefix: "10.0.0.1/32"},
		{in: "::ffff:10.0.0.1", prefix: "10.0.0.1/32"},
		{in: "10.0.0.0/8", prefix: "10.0.0.0/8"},
		{in: "2001:db8::/32", prefix: "2001:db8::/32"},
		{in: "fd00::1", prefix: "fd00::1/128"},
		{in: "10.0.0.0/33", wantErr: `bad CIDR "10.0.0.0/33"`},
		{in: "10.0.0.1/8", wantErr: `CIDR "10.0.0.1/8" has host bits set; did you mean "10.0.0.0/8"?`},
		{in: "1.2.3", wantErr: `bad IP address "1.2.3"`},
		{in: "Web", wantErr: `"Web" is neither a group name nor an IP address or CIDR`},
		{in: "", wantErr: `empty entry; write a group name, an IP address or a CIDR`},
	}
	for _, tt := range tests {
		p, err := ParsePeer(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("ParsePeer(%q) error = %v, want %s", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePeer(%q): %v", tt.in, err)
			continue
		}
		var want Peer
		if tt.group != "" {
			want.Group = tt.group
		} else {
			want.Prefix = netip.MustParsePrefix(tt.prefix)
		}
		if p != want {
			t.Errorf("ParsePeer(%q) = %+v, want %+v", tt.in, p, want)
		}
	}
}

func TestParseServiceRef(t *testing.T) {
	tests := []struct {
		in      string
		want    ServiceRef
		wantErr string
	}{
		{in: "https", want: ServiceRef{Name: "https"}},
		{in: "tcp/443", want: ServiceRef{Spec: ports.Spec{Proto: ports.TCP, Lo: 443, Hi: 443, ICMPType: -1, ICMPCode: -1}}},
		{in: "ICMP", want: ServiceRef{Spec: ports.Spec{Proto: ports.ICMP, Hi: 65535, ICMPType: -1, ICMPCode: -1}}},
		{in: "any", want: ServiceRef{Spec: ports.AnySpec()}},
		{in: "tpc/443", wantErr: `unknown protocol "tpc"`},
		{in: "Web", wantErr: `"Web" is neither a service name nor a port spec such as "tcp/443"`},
	}
	for _, tt := range tests {
		got, err := ParseServiceRef(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("ParseServiceRef(%q) error = %v, want %s", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseServiceRef(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestCheckName(t *testing.T) {
	for name, ok := range map[string]bool{
		"a": true, "web-1": true, "a.b-c": true, "0": true, strings.Repeat("a", 253): true,
		"": false, "A": false, "-a": false, "a-": false, ".a": false, "a_b": false, "a/b": false, strings.Repeat("a", 254): false,
	} {
		if got := checkName(name) == ""; got != ok {
			t.Errorf("checkName(%q) ok = %v, want %v (%s)", name, got, ok, checkName(name))
		}
	}
}

func TestValidateObjectClean(t *testing.T) {
	// Objects built in code may leave apiVersion and kind empty.
	objs := []Object{
		&Workload{Header: Header{Metadata: Metadata{Name: "w"}}, Spec: WorkloadSpec{IPs: []string{"10.0.0.1"}, Tags: map[string]string{"k8s.io/app": "x"}}},
		&Group{Header: Header{Metadata: Metadata{Name: "g"}}, Spec: GroupSpec{Match: `a in ("x")`, IPs: []string{"::/0"}}},
		&Service{Header: Header{Metadata: Metadata{Name: "s"}}, Spec: ServiceSpec{Ports: []string{"icmp/3/4"}}},
		&DefaultRule{Header: Header{Metadata: Metadata{Name: "default"}}, Spec: DefaultRuleSpec{Action: ActionReject}},
	}
	for _, o := range objs {
		if errs := ValidateObject(Document{Object: o}); len(errs) != 0 {
			t.Errorf("%T: %v", o, errs)
		}
	}
	bad := &Group{Header: Header{APIVersion: "x/v9", Kind: KindService, Metadata: Metadata{Name: "g"}}}
	want := "Group \"g\": apiVersion: unsupported version \"x/v9\"; expected \"bulkhead.io/v1\"\n" +
		"Group \"g\": kind: kind \"Service\" does not match the object, a Group"
	if got := ValidateObject(Document{Object: bad}).Error(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}
