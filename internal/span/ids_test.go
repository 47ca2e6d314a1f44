package span

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/nft"
	"github.com/bulkhead/bulkhead/internal/policy"
)

var idsTexts = map[uint32]IDSSignature{
	10: {Text: `alert http any any -> any any (msg:"ten"; sid:10;)`, Set: "et@2"},
	20: {Text: `drop tcp any any -> any 22 (msg:"twenty"; sid:20;)`, Set: "local@1"},
	30: {Text: `alert dns any any -> any any (msg:"thirty"; sid:30;)`, Set: "et@2"},
}

func idsText(sid uint32) (IDSSignature, bool) { s, ok := idsTexts[sid]; return s, ok }

func TestIDSAssemble(t *testing.T) {
	vars := map[string]string{"HOME_NET": "[10.0.0.0/8]", "HTTP_PORTS": "80"}
	sel := []IDSSelection{
		{Workload: "web-2", Interface: "bhw2", Mode: "prevent", Profiles: []string{"web", "base", "web"}, SIDs: []uint32{20, 10, 20}, PreventSIDs: []uint32{20}},
		{Workload: "web-3", Interface: "bhw3", Mode: "prevent", Profiles: []string{"web-ips"}, SIDs: []uint32{30, 10, 20}, PreventSIDs: []uint32{30, 10, 20},
			BlockSIDs: []uint32{30, 10, 30}, RejectSIDs: []uint32{}},
		{Workload: "db-1", Interface: "bhw9", Mode: "detect"}, // nothing selected: left out
		{Workload: "web-1", Interface: "bhw1", Mode: "detect", Profiles: []string{"base"}, SIDs: []uint32{10}},
	}
	st, err := IDS(vars, sel, idsText)
	if err != nil {
		t.Fatal(err)
	}
	want := &nft.IDSState{
		Version: "et@2 local@1",
		Vars:    vars,
		Rules:   []string{idsTexts[10].Text, idsTexts[20].Text, idsTexts[30].Text},
		Workloads: []nft.IDSWorkload{
			{Name: "web-1", Interface: "bhw1", Mode: "detect", Profiles: []string{"base"}, SIDs: []uint32{10}},
			{Name: "web-2", Interface: "bhw2", Mode: "prevent", Profiles: []string{"base", "web"}, SIDs: []uint32{10, 20}, PreventSIDs: []uint32{20}},
			{Name: "web-3", Interface: "bhw3", Mode: "prevent", Profiles: []string{"web-ips"}, SIDs: []uint32{10, 20, 30}, PreventSIDs: []uint32{10, 20, 30},
				BlockSIDs: []uint32{10, 30}},
		},
	}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("state:\n got %+v\nwant %+v", st, want)
	}
	// The order of the input does not matter.
	rev := []IDSSelection{sel[3], sel[2], sel[1], sel[0]}
	st2, _ := IDS(vars, rev, idsText)
	if !reflect.DeepEqual(st, st2) {
		t.Fatal("order of the selections changed the state")
	}
	if st, err := IDS(vars, []IDSSelection{sel[2]}, idsText); st != nil || err != nil {
		t.Fatalf("nothing selected: %+v, %v", st, err)
	}
	if _, err := IDS(vars, []IDSSelection{{Workload: "w", Interface: "i", Mode: "detect", SIDs: []uint32{99}}}, idsText); err == nil || !strings.Contains(err.Error(), "sid 99") {
		t.Fatalf("unknown sid: %v", err)
	}
	if _, err := IDS(vars, []IDSSelection{{Workload: "w", Interface: "i", Mode: "prevent", SIDs: []uint32{10}, PreventSIDs: []uint32{20}}}, idsText); err == nil {
		t.Fatal("prevent sid outside sids: no error")
	}
	for _, bad := range []IDSSelection{
		{Workload: "w", Interface: "i", Mode: "prevent", SIDs: []uint32{10, 30}, PreventSIDs: []uint32{10}, BlockSIDs: []uint32{30}},
		{Workload: "w", Interface: "i", Mode: "prevent", SIDs: []uint32{10, 30}, PreventSIDs: []uint32{10}, RejectSIDs: []uint32{30}},
		{Workload: "w", Interface: "i", Mode: "prevent", SIDs: []uint32{10}, PreventSIDs: []uint32{10}, BlockSIDs: []uint32{10}, RejectSIDs: []uint32{10}},
	} {
		if _, err := IDS(vars, []IDSSelection{bad}, idsText); err == nil || !strings.Contains(err.Error(), "sid") {
			t.Errorf("block %v reject %v of prevent %v: error %v", bad.BlockSIDs, bad.RejectSIDs, bad.PreventSIDs, err)
		}
	}
	if _, err := IDS(vars, []IDSSelection{{Workload: "w", Interface: "i", Mode: "block", SIDs: []uint32{10}}}, idsText); err == nil || !strings.Contains(err.Error(), `mode "block"`) {
		t.Fatalf("bad mode: %v", err)
	}
}

// TestIDSWire: the IDS part survives the wire, and a state without it has
// the bytes it had before IDS existed.
func TestIDSWire(t *testing.T) {
	data, err := os.ReadFile("testdata/shop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := policy.Decode("shop.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Apply(policy.NewSet(), docs)
	if err != nil {
		t.Fatal(err)
	}
	e, err := eval.Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	hosts := Hosts(set)
	st, err := ForHost(e, set, hosts[0], 7)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := Encode(st)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(plain, []byte(`"ids"`)) {
		t.Fatalf("a state without IDS carries an ids field:\n%s", plain)
	}
	st.IDS, err = IDS(map[string]string{"HOME_NET": "any"}, []IDSSelection{
		{Workload: st.Workloads[0].Name, Interface: st.Workloads[0].Interface, Mode: "prevent", Profiles: []string{"p"}, SIDs: []uint32{10, 20}, PreventSIDs: []uint32{20}},
	}, idsText)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encode(st)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got.IDS, st.IDS)
	}
	if again, _ := Encode(got); !bytes.Equal(again, b) {
		t.Fatal("re-encoding differs")
	}
	// Removing IDS again gives the old bytes.
	got.IDS = nil
	if again, _ := Encode(got); !bytes.Equal(again, plain) {
		t.Fatal("a state whose IDS was removed does not have its old bytes")
	}
	// Decoding stays strict inside the IDS part.
	for _, c := range []struct{ from, to, want string }{
		{`"mode":"prevent"`, `"mode":"prevent","extra":1`, "unknown field"},
		{`"mode":"prevent"`, `"mode":"inline"`, `mode "inline"`},
		{`"sids":[10,20]`, `"sids":[20,10]`, "not sorted"},
		{`"preventSids":[20]`, `"preventSids":[30]`, "prevent sid 30"},
	} {
		bad := strings.Replace(string(b), c.from, c.to, 1)
		if bad == string(b) {
			t.Fatalf("%s not in %s", c.from, b)
		}
		if _, err := Decode([]byte(bad)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s -> %s: error %v, want %q", c.from, c.to, err, c.want)
		}
	}
}

// TestIDSWireEnforced: block and reject sids survive the wire, are left out
// when empty (a state without them keeps its bytes), and are checked when
// decoded.
func TestIDSWireEnforced(t *testing.T) {
	v := nft.Verdict{Rule: 1, Action: nft.Drop}
	st := &nft.HostState{EgressDefault: v, IngressDefault: v}
	sel := IDSSelection{Workload: "web", Interface: "bhwweb", Mode: "prevent", Profiles: []string{"p"},
		SIDs: []uint32{10, 20, 30}, PreventSIDs: []uint32{10, 20, 30}}
	var err error
	if st.IDS, err = IDS(nil, []IDSSelection{sel}, idsText); err != nil {
		t.Fatal(err)
	}
	plain, err := Encode(st)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(plain, []byte("blockSids")) || bytes.Contains(plain, []byte("rejectSids")) {
		t.Fatalf("a state without enforced alert sids names them:\n%s", plain)
	}
	sel.BlockSIDs, sel.RejectSIDs = []uint32{30, 10}, []uint32{20}
	if st.IDS, err = IDS(nil, []IDSSelection{sel}, idsText); err != nil {
		t.Fatal(err)
	}
	if w := st.IDS.Workloads[0]; !reflect.DeepEqual(w.BlockSIDs, []uint32{10, 30}) || !reflect.DeepEqual(w.RejectSIDs, []uint32{20}) {
		t.Fatalf("block %v reject %v", w.BlockSIDs, w.RejectSIDs)
	}
	b, err := Encode(st)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got.IDS, st.IDS)
	}
	if again, _ := Encode(got); !bytes.Equal(again, b) {
		t.Fatal("re-encoding differs")
	}
	for _, c := range []struct{ from, to, want string }{
		{`"blockSids":[10,30]`, `"blockSids":[30,10]`, "not sorted"},
		{`"blockSids":[10,30]`, `"blockSids":[10,10,30]`, "not sorted"},
		{`"rejectSids":[20]`, `"rejectSids":[20,40]`, "reject sid 40 is not among its prevent sids"},
		{`"preventSids":[10,20,30]`, `"preventSids":[10,20]`, "block sid 30 is not among its prevent sids"},
		{`"rejectSids":[20]`, `"rejectSids":[10]`, "sid 10 is both a block and a reject sid"},
		{`"rejectSids":[20]`, `"rejectSids":"20"`, "rejectSids"},
	} {
		bad := strings.Replace(string(b), c.from, c.to, 1)
		if bad == string(b) {
			t.Fatalf("%s not in %s", c.from, b)
		}
		if _, err := Decode([]byte(bad)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s -> %s: error %v, want %q", c.from, c.to, err, c.want)
		}
	}
}

// FuzzIDSDecode: the IDS part of a state from the wire never crashes the
// agent's decoder, and what it accepts encodes and decodes to itself.
func FuzzIDSDecode(f *testing.F) {
	v := nft.Verdict{Rule: 1, Action: nft.Drop}
	st := &nft.HostState{EgressDefault: v, IngressDefault: v}
	var err error
	st.IDS, err = IDS(map[string]string{"HOME_NET": "[10.0.0.0/8]"}, []IDSSelection{
		{Workload: "web", Interface: "bhwweb", Mode: "prevent", Profiles: []string{"p"}, SIDs: []uint32{10, 20}, PreventSIDs: []uint32{20}},
		{Workload: "web2", Interface: "bhwweb2", Mode: "prevent", Profiles: []string{"q"}, SIDs: []uint32{10, 20, 30}, PreventSIDs: []uint32{10, 20, 30},
			BlockSIDs: []uint32{10}, RejectSIDs: []uint32{30}},
		{Workload: "db", Interface: "bhwdb", Mode: "detect", SIDs: []uint32{30}},
	}, idsText)
	if err != nil {
		f.Fatal(err)
	}
	b, err := Encode(st)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"format":"bulkhead.hoststate.v1+json","revision":1,"egressDefault":{"rule":1,"action":"drop"},"ingressDefault":{"rule":1,"action":"drop"},"ids":{"vars":{},"rules":[],"workloads":[{"name":"a","interface":"b","mode":"detect","profiles":[],"sids":[1],"preventSids":[]}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Encode(st)
		if err != nil {
			t.Fatalf("decoded state does not encode: %v", err)
		}
		back, err := Decode(again)
		if err != nil {
			t.Fatalf("encoded state does not decode: %v\n%s", err, again)
		}
		if !reflect.DeepEqual(normalize(st), normalize(back)) {
			t.Fatalf("round trip changed the state:\n%+v\n%+v", st.IDS, back.IDS)
		}
	})
}
