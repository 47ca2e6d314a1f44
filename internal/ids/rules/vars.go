package rules

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Vars are the address and port variables rules name as $NAME. Address
// and port groups share one namespace, as they do in practice: a
// variable's value is resolved as addresses or as ports by where the rule
// uses it.
type Vars struct {
	m map[string]string
}

// defaultVars are Suricata's customary variables. EXTERNAL_NET is "any",
// not the usual "!$HOME_NET": Bulkhead inspects east-west traffic inside
// the data center, where the attacker is usually another workload on the
// home network, and rules written "$EXTERNAL_NET -> $HOME_NET" must still
// see lateral movement.
var defaultVars = map[string]string{
	"HOME_NET":       "[10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7]",
	"EXTERNAL_NET":   "any",
	"HTTP_SERVERS":   "$HOME_NET",
	"SQL_SERVERS":    "$HOME_NET",
	"DNS_SERVERS":    "$HOME_NET",
	"SMTP_SERVERS":   "$HOME_NET",
	"TELNET_SERVERS": "$HOME_NET",
	"AIM_SERVERS":    "$EXTERNAL_NET",
	"DC_SERVERS":     "$HOME_NET",
	"DNP3_SERVER":    "$HOME_NET",
	"DNP3_CLIENT":    "$HOME_NET",
	"MODBUS_SERVER":  "$HOME_NET",
	"MODBUS_CLIENT":  "$HOME_NET",
	"ENIP_SERVER":    "$HOME_NET",
	"ENIP_CLIENT":    "$HOME_NET",

	"HTTP_PORTS": "[80,81,311,383,591,593,901,1220,1414,1741,1830,2301,2381,2809,3037,3128,3702,4343,4848,5250," +
		"6988,7000,7001,7144,7145,7510,7777,7779,8000,8008,8014,8028,8080,8085,8088,8090,8118,8123,8180,8181," +
		"8243,8280,8300,8800,8888,8899,9000,9060,9080,9090,9091,9443,9999,11371,34443,34444,41080,50002,55555]",
	"SHELLCODE_PORTS": "!80",
	"ORACLE_PORTS":    "1521",
	"SSH_PORTS":       "22",
	"DNP3_PORTS":      "20000",
	"MODBUS_PORTS":    "502",
	"FILE_DATA_PORTS": "[$HTTP_PORTS,110,143]",
	"FTP_PORTS":       "21",
	"GENEVE_PORTS":    "6081",
	"VXLAN_PORTS":     "4789",
	"TEREDO_PORTS":    "3544",
}

// DefaultVars returns the customary variables (see defaultVars).
func DefaultVars() *Vars {
	return &Vars{m: maps.Clone(defaultVars)}
}

// Set defines or replaces a variable. The name may be written with its
// "$"; the value must read as an address or a port specification, with
// the variables it names already defined.
func (v *Vars) Set(name, value string) error {
	name = strings.TrimPrefix(strings.TrimSpace(name), "$")
	if !validVarName(name) {
		return fmt.Errorf("ids vars: bad variable name %q: want letters, digits and _", name)
	}
	value = strings.TrimSpace(value)
	old, had := v.m[name]
	v.m[name] = value
	if err := v.check(name); err != nil {
		if had {
			v.m[name] = old
		} else {
			delete(v.m, name)
		}
		return fmt.Errorf("ids vars: %w", err)
	}
	return nil
}

// Map returns a copy of the variables, names without "$".
func (v *Vars) Map() map[string]string { return maps.Clone(v.m) }

// VarsFromMap returns the default variables overridden by m (as Map
// returns them, or as written in a profile) and checks them all.
func VarsFromMap(m map[string]string) (*Vars, error) {
	v := DefaultVars()
	for _, name := range slices.Sorted(maps.Keys(m)) {
		n := strings.TrimPrefix(strings.TrimSpace(name), "$")
		if !validVarName(n) {
			return nil, fmt.Errorf("ids vars: bad variable name %q: want letters, digits and _", name)
		}
		v.m[n] = strings.TrimSpace(m[name])
	}
	if err := v.checkAll(); err != nil {
		return nil, fmt.Errorf("ids vars: %w", err)
	}
	return v, nil
}

// ReadVars reads variables overriding the defaults: either suricata.yaml's
// shape (vars: address-groups: ..., port-groups: ...; the "vars:" level
// may be left out, other top-level keys are ignored) or lines "NAME VALUE"
// with # comments.
func ReadVars(r io.Reader, file string) (*Vars, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("ids vars %s: %w", file, err)
	}
	v := DefaultVars()
	if looksLikeLines(data) {
		for i, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || line[0] == '#' {
				continue
			}
			name, value := line, ""
			if j := strings.IndexAny(line, " \t"); j > 0 {
				name, value = line[:j], line[j+1:]
			}
			name = strings.TrimPrefix(name, "$")
			value = strings.TrimSpace(value)
			if !validVarName(name) || value == "" {
				return nil, fmt.Errorf("ids vars %s:%d: want NAME VALUE, got %q", file, i+1, line)
			}
			v.m[name] = value
		}
	} else {
		var doc struct {
			Vars   *varGroups `yaml:"vars"`
			Groups varGroups  `yaml:",inline"`
		}
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("ids vars %s: %w", file, err)
		}
		g := doc.Groups
		if doc.Vars != nil {
			g = *doc.Vars
		}
		if len(g.AddressGroups) == 0 && len(g.PortGroups) == 0 {
			return nil, fmt.Errorf("ids vars %s: no vars.address-groups or vars.port-groups", file)
		}
		for _, grp := range []map[string]yaml.Node{g.AddressGroups, g.PortGroups} {
			for name, n := range grp {
				if n.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("ids vars %s:%d: %s: want a string value", file, n.Line, name)
				}
				name = strings.TrimPrefix(name, "$")
				if !validVarName(name) {
					return nil, fmt.Errorf("ids vars %s:%d: bad variable name %q", file, n.Line, name)
				}
				v.m[name] = strings.TrimSpace(n.Value)
			}
		}
	}
	if err := v.checkAll(); err != nil {
		return nil, fmt.Errorf("ids vars %s: %w", file, err)
	}
	return v, nil
}

type varGroups struct {
	AddressGroups map[string]yaml.Node `yaml:"address-groups"`
	PortGroups    map[string]yaml.Node `yaml:"port-groups"`
}

// looksLikeLines tells the "NAME VALUE" format from YAML: no line of it
// has a key ending in ":".
func looksLikeLines(data []byte) bool {
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		first, _, _ := bytes.Cut(line, []byte(" "))
		if bytes.HasSuffix(first, []byte(":")) || line[0] == '-' || bytes.Equal(line, []byte("---")) {
			return false
		}
	}
	return true
}

func validVarName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		return false
	}
	return true
}

// check reports whether the variable reads as addresses or ports.
func (v *Vars) check(name string) error {
	r := newResolver(v)
	_, aerr := r.addrRanges("$" + name)
	if aerr == nil {
		return nil
	}
	_, perr := r.portRanges("$" + name)
	if perr == nil {
		return nil
	}
	if strings.Contains(aerr.Error(), "undefined variable") || strings.Contains(aerr.Error(), "cycle") {
		return aerr
	}
	return fmt.Errorf("$%s = %q is neither addresses (%v) nor ports (%v)", name, v.m[name], aerr, perr)
}

func (v *Vars) checkAll() error {
	for _, name := range slices.Sorted(maps.Keys(v.m)) {
		if err := v.check(name); err != nil {
			return err
		}
	}
	return nil
}
