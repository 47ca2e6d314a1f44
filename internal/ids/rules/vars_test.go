package rules

import (
	"net/netip"
	"strings"
	"testing"
)

func TestVarsSet(t *testing.T) {
	v := DefaultVars()
	if err := v.Set("$HOME_NET", "[192.0.2.0/24]"); err != nil {
		t.Fatal(err)
	}
	if err := v.Set("MY_PORTS", "[8080,8443]"); err != nil {
		t.Fatal(err)
	}
	if got := v.Map()["HOME_NET"]; got != "[192.0.2.0/24]" {
		t.Errorf("HOME_NET = %q", got)
	}
	// Variables naming HOME_NET follow it.
	r, err := Parse(`alert tcp $HTTP_SERVERS $MY_PORTS -> any any (sid:1;)`, v)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Src.Contains(netip.MustParseAddr("192.0.2.9")) || r.Src.Contains(netip.MustParseAddr("10.0.0.1")) {
		t.Errorf("src %+v", r.Src)
	}
	if !r.SrcPorts.Contains(8443) || r.SrcPorts.Contains(80) {
		t.Errorf("src ports %+v", r.SrcPorts)
	}
	for _, tt := range []struct{ name, value, want string }{
		{"1BAD", "80", "bad variable name"},
		{"X", "$UNDEFINED", "undefined variable $UNDEFINED"},
		{"X", "banana", "neither addresses"},
		{"HOME_NET", "$HTTP_SERVERS", "variable cycle $HOME_NET -> $HTTP_SERVERS -> $HOME_NET"},
	} {
		err := v.Set(tt.name, tt.value)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Set(%s, %s): %v, want %q", tt.name, tt.value, err, tt.want)
		}
	}
	// A refused value leaves the old one.
	if got := v.Map()["HOME_NET"]; got != "[192.0.2.0/24]" {
		t.Errorf("HOME_NET after refused Set = %q", got)
	}
	if _, ok := v.Map()["X"]; ok {
		t.Error("refused new variable X was kept")
	}
}

func TestVarsFromMap(t *testing.T) {
	v, err := VarsFromMap(map[string]string{"HOME_NET": "[10.9.0.0/16]", "$WEB_PORTS": "[80,443]"})
	if err != nil {
		t.Fatal(err)
	}
	m := v.Map()
	if m["HOME_NET"] != "[10.9.0.0/16]" || m["WEB_PORTS"] != "[80,443]" || m["SSH_PORTS"] != "22" {
		t.Errorf("map %v", m)
	}
	// Map and VarsFromMap round-trip.
	v2, err := VarsFromMap(m)
	if err != nil || len(v2.Map()) != len(m) {
		t.Errorf("round trip: %v %v", v2.Map(), err)
	}
	if _, err := VarsFromMap(map[string]string{"A": "$B", "B": "$A"}); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: %v", err)
	}
	if _, err := VarsFromMap(map[string]string{"A": "10.0.0.0/40"}); err == nil || !strings.Contains(err.Error(), "$A") {
		t.Errorf("bad value: %v", err)
	}
}

func TestReadVars(t *testing.T) {
	yamlVars := `%YAML 1.1
---
vars:
  # more specific is better for alert accuracy and performance
  address-groups:
    HOME_NET: "[10.20.0.0/16]"
    EXTERNAL_NET: "!$HOME_NET"
    DB_SERVERS: "[10.20.5.0/24]"
  port-groups:
    HTTP_PORTS: "[80,8080]"
    SSH_PORTS: 2222
default-log-dir: /var/log/suricata/
`
	lines := `# deployment variables
HOME_NET [10.20.0.0/16]
$EXTERNAL_NET !$HOME_NET
DB_SERVERS	[10.20.5.0/24]
HTTP_PORTS [80,8080]
SSH_PORTS 2222
`
	bare := `address-groups:
  HOME_NET: "[10.20.0.0/16]"
  EXTERNAL_NET: "!$HOME_NET"
  DB_SERVERS: "[10.20.5.0/24]"
port-groups:
  HTTP_PORTS: "[80,8080]"
  SSH_PORTS: "2222"
`
	for name, text := range map[string]string{"suricata.yaml": yamlVars, "vars.txt": lines, "bare.yaml": bare} {
		v, err := ReadVars(strings.NewReader(text), name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		m := v.Map()
		want := map[string]string{"HOME_NET": "[10.20.0.0/16]", "EXTERNAL_NET": "!$HOME_NET", "DB_SERVERS": "[10.20.5.0/24]",
			"HTTP_PORTS": "[80,8080]", "SSH_PORTS": "2222", "SQL_SERVERS": "$HOME_NET"}
		for k, w := range want {
			if m[k] != w {
				t.Errorf("%s: %s = %q, want %q", name, k, m[k], w)
			}
		}
	}
	for _, tt := range []struct{ name, text, want string }{
		{"bad.txt", "HOME_NET\n", "bad.txt:1: want NAME VALUE"},
		{"bad2.txt", "# x\nHOME_NET [10.0.0.0/8]\nPORTS 99999\n", "bad2.txt: $PORTS"},
		{"bad.yaml", "vars:\n  address-groups:\n    HOME_NET: [1, 2]\n", "bad.yaml:3: HOME_NET: want a string"},
		{"empty.yaml", "outputs:\n  - eve-log: {}\n", "no vars.address-groups"},
		{"broken.yaml", "vars: [\n", "broken.yaml"},
	} {
		_, err := ReadVars(strings.NewReader(tt.text), tt.name)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}
