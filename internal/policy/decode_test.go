package policy

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Document // Source.At is not compared
	}{
		{
			name: "empty",
			in:   "",
		},
		{
			name: "only separators and comments",
			in:   "---\n# nothing\n---\n",
		},
		{
			name: "counts empty documents",
			in:   "---\n---\napiVersion: bulkhead.io/v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [tcp/1]}\n",
			want: []Document{{
				Source: Source{File: "f.yaml", Index: 2, Line: 3},
				Object: &Service{Header: Header{APIVersion: APIVersion, Kind: KindService, Metadata: Metadata{Name: "s"}}, Spec: ServiceSpec{Ports: []string{"tcp/1"}}},
			}},
		},
		{
			name: "scalars as written",
			in: `apiVersion: bulkhead.io/v1
kind: ContextProfile
metadata: {name: p, labels: {n: 1, b: true}}
spec: {apps: [{name: APP_TLS, minVersion: 1.2, maxVersion: 1.3}]}
`,
			want: []Document{{
				Source: Source{File: "f.yaml", Index: 1, Line: 1},
				Object: &ContextProfile{
					Header: Header{APIVersion: APIVersion, Kind: KindContextProfile, Metadata: Metadata{Name: "p", Labels: map[string]string{"n": "1", "b": "true"}}},
					Spec:   ContextProfileSpec{Apps: []AppMatch{{Name: "APP_TLS", MinVersion: "1.2", MaxVersion: "1.3"}}},
				},
			}},
		},
		{
			name: "null and empty values are zero",
			in: `apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: p, description: ~}
spec:
  category: Emergency
  priority: 0x10
  appliedTo: []
  rules:
    - {name: r, action: drop, log: false, sources: null}
`,
			want: []Document{{
				Source: Source{File: "f.yaml", Index: 1, Line: 1},
				Object: &Policy{
					Header: Header{APIVersion: APIVersion, Kind: KindPolicy, Metadata: Metadata{Name: "p"}},
					Spec:   PolicySpec{Category: CategoryEmergency, Priority: 16, Rules: []Rule{{Name: "r", Action: ActionDrop}}},
				},
			}},
		},
		{
			name: "list items share the document number",
			in: `# export
apiVersion: bulkhead.io/v1
kind: List
items:
- apiVersion: bulkhead.io/v1
  kind: DefaultRule
  metadata: {name: default}
  spec: {action: reject}
- apiVersion: bulkhead.io/v1
  kind: Group
  metadata: {name: g}
  spec: {groups: [a]}
`,
			want: []Document{
				{Source: Source{File: "f.yaml", Index: 1, Line: 5}, Object: &DefaultRule{
					Header: Header{APIVersion: APIVersion, Kind: KindDefaultRule, Metadata: Metadata{Name: "default"}},
					Spec:   DefaultRuleSpec{Action: ActionReject}}},
				{Source: Source{File: "f.yaml", Index: 1, Line: 9}, Object: &Group{
					Header: Header{APIVersion: APIVersion, Kind: KindGroup, Metadata: Metadata{Name: "g"}},
					Spec:   GroupSpec{Groups: []string{"a"}}}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := Decode("f.yaml", []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			for i := range docs {
				if docs[i].Source.At == nil {
					t.Errorf("document %d has no positions", i)
				}
				docs[i].Source.At = nil
			}
			if !reflect.DeepEqual(docs, tt.want) {
				t.Errorf("got  %s\nwant %s", dump(docs), dump(tt.want))
			}
		})
	}
}

func dump(docs []Document) string {
	var b strings.Builder
	for _, d := range docs {
		fmt.Fprintf(&b, "%+v %#v\n", d.Source, d.Object)
	}
	return b.String()
}

func TestDecodePositions(t *testing.T) {
	in := `apiVersion: bulkhead.io/v1
kind: Policy
metadata:
  name: shop
spec:
  category: Application
  rules:
    - name: a
      sources: [web, db]
      action: allow
`
	docs, err := Decode("p.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	at := docs[0].Source.At
	for path, want := range map[string]Position{
		"metadata.name":            {4, 9},
		"spec.rules[0]":            {8, 7},
		"spec.rules[0].sources[1]": {9, 22},
		"spec.rules[0].action":     {10, 15},
	} {
		if got, ok := at.Lookup(path); !ok || got != want {
			t.Errorf("position of %s = %v, want %v", path, got, want)
		}
	}
}

func TestDecodeObject(t *testing.T) {
	o, err := DecodeObject([]byte(`{"apiVersion":"bulkhead.io/v1","kind":"Group","metadata":{"name":"g"},"spec":{"ips":["10.0.0.0/8"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := o.(*Group); !ok || g.Spec.IPs[0] != "10.0.0.0/8" {
		t.Errorf("got %#v", o)
	}
	tests := []struct{ in, want string }{
		{``, `expected one object, got 0`},
		{"apiVersion: bulkhead.io/v1\nkind: Group\nmetadata: {name: a}\n---\napiVersion: bulkhead.io/v1\nkind: Group\nmetadata: {name: b}\n", `expected one object, got 2`},
		{`{"apiVersion":"bulkhead.io/v1","kind":"Group","metadata":{"name":"g"},"spec":{"ipz":[]}}`,
			`Group "g", line 1:79: spec.ipz: unknown field; did you mean "ips"?`},
	}
	for _, tt := range tests {
		_, err := DecodeObject([]byte(tt.in))
		if err == nil || err.Error() != tt.want {
			t.Errorf("DecodeObject(%q) error:\n got %v\nwant %s", tt.in, err, tt.want)
		}
	}
}

func TestDecodeReportsAllDocuments(t *testing.T) {
	in := "apiVersion: bulkhead.io/v1\nkind: Group\nmetadata: {name: a, x: 1}\n---\n" +
		"apiVersion: bulkhead.io/v1\nkind: Group\nmetadata: {name: b}\n---\n" +
		"apiVersion: bulkhead.io/v1\nkind: Group\nmetadata: {name: c}\nspec: {y: 1}\n"
	docs, err := Decode("f.yaml", []byte(in))
	if docs != nil {
		t.Errorf("a bad document must fail the whole call; got %d documents", len(docs))
	}
	var l ErrorList
	if !errors.As(err, &l) || len(l) != 2 || l[0].Source.Index != 1 || l[1].Source.Index != 3 {
		t.Errorf("want errors in documents 1 and 3, got %v", err)
	}
}

func TestDecodeAliasBomb(t *testing.T) {
	// Each level refers to the one below ten times: 10^7 values once
	// expanded, from a few hundred bytes.
	var b strings.Builder
	b.WriteString("apiVersion: bulkhead.io/v1\nkind: Service\nmetadata: {name: s}\nx0: &a0 [tcp/1]\n")
	for i := 1; i <= 7; i++ {
		fmt.Fprintf(&b, "x%d: &a%d [", i, i)
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("spec: {ports: *a7}\n")
	_, err := Decode("bomb.yaml", []byte(b.String()))
	if err == nil {
		t.Fatal("want an error")
	}
	// The budget, not the type, must stop it: ports is a list of strings,
	// and a list of lists is reported per element.
	if !strings.Contains(err.Error(), "input too large") && !strings.Contains(err.Error(), "expected a string") {
		t.Errorf("unexpected error: %.300s", err)
	}
}

func TestDecodeRecursiveAlias(t *testing.T) {
	in := "apiVersion: bulkhead.io/v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: &p [*p]}\n"
	_, err := Decode("r.yaml", []byte(in))
	if err == nil || !strings.Contains(err.Error(), "spec.ports[0]: expected a string, got a list") {
		t.Errorf("got %v", err)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	objs := []Object{
		&Workload{Spec: WorkloadSpec{IPs: []string{"10.0.0.1"}, Tags: map[string]string{"z": "1", "a": "true", "m": "1.5"}}},
		&Policy{Spec: PolicySpec{Category: CategoryApplication, Priority: -3, Rules: []Rule{
			{Name: "r", Description: "line one\nline two\n", Sources: []string{"*"}, Action: ActionAllow, Log: true},
		}}},
		&ContextProfile{Spec: ContextProfileSpec{Apps: []AppMatch{{Name: "APP_TLS", MinVersion: "1.2"}}, FQDNs: []string{"*.example.com"}}},
		&Service{Spec: ServiceSpec{}},
	}
	for i, o := range objs {
		o.GetHeader().Metadata.Name = fmt.Sprintf("o%d", i)
		a, err := Encode(o)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeObject(a)
		if err != nil {
			t.Fatalf("%s does not decode: %v", a, err)
		}
		b, _ := Encode(back)
		if string(a) != string(b) {
			t.Errorf("round trip changed the YAML:\n%s\nthen\n%s", a, b)
		}
		for j := 0; j < 5; j++ {
			if c, _ := Encode(o); string(c) != string(a) {
				t.Fatalf("Encode is not deterministic:\n%s\nthen\n%s", a, c)
			}
		}
	}
	if h := objs[0].GetHeader(); h.Kind != "" || h.APIVersion != "" {
		t.Error("Encode filled in the header of the object itself")
	}
	got, _ := Encode(objs[0])
	want := `apiVersion: bulkhead.io/v1
kind: Workload
metadata:
  name: o0
spec:
  ips:
    - 10.0.0.1
  tags:
    a: "true"
    m: "1.5"
    z: "1"
`
	if string(got) != want {
		t.Errorf("Encode:\n%s\nwant:\n%s", got, want)
	}
	empty, _ := Encode(objs[3])
	if !strings.Contains(string(empty), "ports: []") {
		t.Errorf("a required empty list should encode as []:\n%s", empty)
	}
}

func TestEncodeList(t *testing.T) {
	s := NewSet()
	s.Put(&Group{Header: Header{Metadata: Metadata{Name: "g"}}, Spec: GroupSpec{Match: "all()"}})
	out, err := EncodeList(s.All())
	if err != nil {
		t.Fatal(err)
	}
	docs, err := Decode("list.yaml", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(docs) != 2 || KeyOf(docs[0].Object) != (ObjectKey{KindGroup, "g"}) || KeyOf(docs[1].Object) != (ObjectKey{KindDefaultRule, "default"}) {
		t.Errorf("got %s", dump(docs))
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"apiVersion: bulkhead.io/v1\nkind: Group\nmetadata: {name: g}\nspec: {match: 'a == \"b\"', ips: [10.0.0.0/8]}\n",
		"apiVersion: bulkhead.io/v1\nkind: Policy\nmetadata: {name: p}\nspec: {category: Application, priority: 1, rules: [{name: r, action: allow, sources: [a, 10.0.0.1]}]}\n",
		"kind: List\nitems: [{kind: Service, apiVersion: bulkhead.io/v1, metadata: {name: s}, spec: {ports: [tcp/1]}}]\n",
		`{"apiVersion":"bulkhead.io/v1","kind":"Workload","metadata":{"name":"w"},"spec":{"ips":["::1"],"tags":{"a":"b"}}}`,
		"a: &x [*x]\n", "<<: {a: 1}\n", "---\n---\n- 1\n", "kind: [", "\t", "apiVersion: bulkhead.io/v1\nkind: Group\nmetadata: {name: g, name: h}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := Decode("fuzz.yaml", data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		// Whatever decodes can be validated, applied and encoded.
		s, err := Apply(NewSet(), docs)
		if err == nil {
			if _, err := EncodeSet(s); err != nil {
				t.Fatal(err)
			}
		}
	})
}
