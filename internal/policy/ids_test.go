package policy

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const idsGroups = `apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: web}
spec: {match: 'tier == "web"'}
`

func TestIDSProfileDecodeRoundTrip(t *testing.T) {
	in := `apiVersion: bulkhead.io/v1
kind: IDSProfile
metadata: {name: web-ips}
spec:
  appliedTo: [web]
  mode: prevent
  preventAction: drop
  workloadAware: false
  signatures:
    maxSeverity: 2
    classtypes: [web-application-attack]
    excludeClasstypes: [policy-violation]
    metadata:
      attack_target: [Web_Server, Server]
      signature_severity: [Major]
    cves: [CVE-2021-44228]
    sids: [2000001]
    excludeSids: [2000002]
    signatureSets: [et-open]
---
apiVersion: bulkhead.io/v1
kind: IDSVariables
metadata: {name: default}
spec:
  address: {HOME_NET: "[10.0.0.0/8]", HTTP_SERVERS: "$WEB_NET", WEB_NET: "[10.1.0.0/16]"}
  port: {HTTP_PORTS: "[80,8080]"}
`
	docs, err := Decode("ids.yaml", []byte(idsGroups+"---\n"+in))
	if err != nil {
		t.Fatal(err)
	}
	p := docs[1].Object.(*IDSProfile)
	off := false
	want := IDSProfileSpec{
		AppliedTo: []string{"web"}, Mode: IDSModePrevent, WorkloadAware: &off, PreventAction: IDSPreventDrop,
		Signatures: IDSSignatureFilter{
			MaxSeverity: 2, Classtypes: []string{"web-application-attack"}, ExcludeClasstypes: []string{"policy-violation"},
			Metadata: map[string][]string{"attack_target": {"Web_Server", "Server"}, "signature_severity": {"Major"}},
			CVEs:     []string{"CVE-2021-44228"}, SIDs: []uint32{2000001}, ExcludeSIDs: []uint32{2000002}, SignatureSets: []string{"et-open"},
		},
	}
	if !reflect.DeepEqual(p.Spec, want) {
		t.Fatalf("spec:\n got %+v\nwant %+v", p.Spec, want)
	}
	if p.Spec.IsWorkloadAware() {
		t.Error("workloadAware: false read as true")
	}
	if p.Spec.EnforcedPreventAction() != IDSPreventDrop {
		t.Errorf("preventAction: %q", p.Spec.EnforcedPreventAction())
	}
	set, err := Apply(NewSet(), docs)
	if err != nil {
		t.Fatal(err)
	}
	// Encoding and decoding again gives the same objects; copies share
	// nothing.
	y, err := EncodeSet(set)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Decode("again.yaml", y)
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	set2, err := Apply(NewSet(), again)
	if err != nil {
		t.Fatal(err)
	}
	if d := DiffSets(set, set2); len(d) != 0 {
		t.Fatalf("round trip changed %+v", d)
	}
	c := set.Clone()
	c.IDSProfiles["web-ips"].Spec.Signatures.Metadata["attack_target"][0] = "X"
	c.IDSVariables["default"].Spec.Address["HOME_NET"] = "any"
	if set.IDSProfiles["web-ips"].Spec.Signatures.Metadata["attack_target"][0] != "Web_Server" || set.IDSVariables["default"].Spec.Address["HOME_NET"] != "[10.0.0.0/8]" {
		t.Fatal("Clone shares memory")
	}
	// Deleting and diffing work as for any kind.
	c.Delete(KindIDSProfile, "web-ips")
	d := DiffSets(set, c)
	if len(d) != 2 || d[0].Kind != KindIDSProfile || d[0].Op != OpDeleted || d[1].Kind != KindIDSVariables || d[1].Op != OpUpdated {
		t.Fatalf("diff: %+v", d)
	}
	v, err := set.IDSVars()
	if err != nil {
		t.Fatal(err)
	}
	if m := v.Map(); m["HOME_NET"] != "[10.0.0.0/8]" || m["HTTP_PORTS"] != "[80,8080]" || m["HTTP_SERVERS"] != "$WEB_NET" {
		t.Errorf("IDSVars: HOME_NET %q HTTP_PORTS %q", m["HOME_NET"], m["HTTP_PORTS"])
	}
}

func TestIDSProfileDefaults(t *testing.T) {
	docs, err := Decode("p.yaml", []byte("apiVersion: bulkhead.io/v1\nkind: IDSProfile\nmetadata: {name: all}\nspec: {mode: detect}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := docs[0].Object.(*IDSProfile)
	if !p.Spec.IsWorkloadAware() || len(p.Spec.AppliedTo) != 0 || p.Spec.EnforcedPreventAction() != IDSPreventAsWritten {
		t.Fatalf("defaults: %+v", p.Spec)
	}
	if errs := ValidateObject(docs[0]); len(errs) != 0 {
		t.Fatal(errs)
	}
}

func TestIDSValidate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // substrings of the error, in order
	}{
		{"unknown field", "kind: IDSProfile\nmetadata: {name: p}\nspec:\n  mode: detect\n  severity: 1\n",
			[]string{"p.yaml:6:3", "spec.severity: unknown field"}},
		{"unknown field in filter", "kind: IDSProfile\nmetadata: {name: p}\nspec:\n  mode: detect\n  signatures: {maxSeverty: 1}\n",
			[]string{"p.yaml:6:16", `spec.signatures.maxSeverty: unknown field; did you mean "maxSeverity"?`}},
		{"missing mode", "kind: IDSProfile\nmetadata: {name: p}\nspec: {}\n",
			[]string{"spec.mode: missing required field; one of detect, prevent"}},
		{"bad mode", "kind: IDSProfile\nmetadata: {name: p}\nspec: {mode: block}\n",
			[]string{`spec.mode: unknown mode "block"; one of detect, prevent`}},
		{"bad severity", "kind: IDSProfile\nmetadata: {name: p}\nspec: {mode: detect, signatures: {maxSeverity: 7}}\n",
			[]string{"spec.signatures.maxSeverity: maxSeverity 7: want 1"}},
		{"sid as text", "kind: IDSProfile\nmetadata: {name: p}\nspec: {mode: detect, signatures: {sids: [abc]}}\n",
			[]string{"spec.signatures.sids[0]: expected a non-negative integer"}},
		{"sid in and out", "kind: IDSProfile\nmetadata: {name: p}\nspec: {mode: detect, signatures: {sids: [5], excludeSids: [5]}}\n",
			[]string{"spec.signatures.sids[0]: sid 5 is also in excludeSids"}},
		{"bad cve", "kind: IDSProfile\nmetadata: {name: p}\nspec: {mode: detect, signatures: {cves: [CVE_2021_44228]}}\n",
			[]string{`spec.signatures.cves[0]: "CVE_2021_44228" is not a CVE id`}},
		{"metadata key without values", "kind: IDSProfile\nmetadata: {name: p}\nspec: {mode: detect, signatures: {metadata: {attack_target: []}}}\n",
			[]string{"spec.signatures.metadata.attack_target: list at least one value"}},
		{"bad prevent action", "kind: IDSProfile\nmetadata: {name: p}\nspec:\n  mode: prevent\n  preventAction: dorp\n",
			[]string{"p.yaml:6:18", `spec.preventAction: unknown prevent action "dorp"`, "asWritten, drop, reject"}},
		{"prevent action in detect mode", "kind: IDSProfile\nmetadata: {name: p}\nspec:\n  mode: detect\n  preventAction: reject\n",
			[]string{"p.yaml:6:18", "spec.preventAction: preventAction reject needs mode prevent"}},
		{"asWritten in detect mode", "kind: IDSProfile\nmetadata: {name: p}\nspec: {mode: detect, preventAction: asWritten}\n",
			[]string{"spec.preventAction: preventAction asWritten needs mode prevent"}},
		{"unknown group", "kind: IDSProfile\nmetadata: {name: p}\nspec: {mode: detect, appliedTo: [wbe]}\n",
			[]string{`spec.appliedTo[0]: unknown group "wbe"`}},
		{"variables name", "kind: IDSVariables\nmetadata: {name: prod}\nspec: {address: {HOME_NET: any}}\n",
			[]string{`metadata.name: IDS variables are named "default", not "prod"`}},
		{"variable name with $", "kind: IDSVariables\nmetadata: {name: default}\nspec: {address: {$HOME_NET: any}}\n",
			[]string{`spec.address["$HOME_NET"]: "$HOME_NET" is not a variable name`}},
		{"variable in both", "kind: IDSVariables\nmetadata: {name: default}\nspec: {address: {X: any}, port: {X: any}}\n",
			[]string{"spec.port.X: X is also an address variable"}},
		{"variable naming an unknown one", "kind: IDSVariables\nmetadata: {name: default}\nspec: {address: {HTTP_SERVERS: $WEB_NET}}\n",
			[]string{"spec.address.HTTP_SERVERS: ", "WEB_NET"}},
		{"variable value", "kind: IDSVariables\nmetadata: {name: default}\nspec: {port: {HTTP_PORTS: \"[80,bad\"}}\n",
			[]string{"p.yaml:4:27", "spec.port.HTTP_PORTS: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := Decode("g.yaml", []byte(idsGroups))
			if err != nil {
				t.Fatal(err)
			}
			more, err := Decode("p.yaml", []byte("apiVersion: bulkhead.io/v1\n"+tt.in))
			if err == nil {
				_, err = Apply(NewSet(), append(docs, more...))
			}
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			msg := err.Error()
			at := 0
			for _, w := range tt.want {
				i := strings.Index(msg[at:], w)
				if i < 0 {
					t.Fatalf("error\n%s\nlacks %q (in order)", msg, w)
				}
				at += i + len(w)
			}
		})
	}
}

// TestIDSExamplePreventAction: examples/ids/et-prevent-profile.yaml reads
// and validates, and enforces ET's alert signatures as drop.
func TestIDSExamplePreventAction(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "ids", "et-prevent-profile.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := Decode("et-prevent-profile.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	set, err := Apply(NewSet(), docs)
	if err != nil {
		t.Fatal(err)
	}
	p := set.IDSProfiles["web-tier-et"]
	if p == nil || p.Spec.Mode != IDSModePrevent || p.Spec.EnforcedPreventAction() != IDSPreventDrop ||
		!reflect.DeepEqual(p.Spec.Signatures.Metadata["attack_target"], []string{"Web_Server", "Server"}) {
		t.Fatalf("profile: %+v", p)
	}
}
