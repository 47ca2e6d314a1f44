// Package inventory is the model of what each inventory source (agents,
// operators, CMDB exports, vCenter) says about workloads, and the merge of
// those per-source facts into the workloads the manager uses: which fact
// won, why, and which facts disagree. It is pure: no store, no network.
package inventory

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Kind is the kind of a source. It takes part in precedence: a live agent
// binding beats an operator's declaration, which beats imported facts.
type Kind string

const (
	KindAgent    Kind = "agent"
	KindOperator Kind = "operator"
	KindVCenter  Kind = "vcenter"
	KindCMDB     Kind = "cmdb"
)

// ValidKind reports whether k is a kind that sources can be configured or
// imported as.
func ValidKind(k Kind) bool {
	switch k {
	case KindAgent, KindOperator, KindVCenter, KindCMDB:
		return true
	}
	return false
}

// Record is what one source says about one object at one time.
type Record struct {
	// Source names the source ("cmdb", "vc-east"); Kind says what it is.
	Source string `json:"source"`
	Kind   Kind   `json:"kind"`
	// Key identifies the object within the source: a CMDB sys_id, a VM's
	// instance UUID. Re-importing the same key replaces the record.
	Key string `json:"key"`
	// Name is the workload name the source gives, already in the policy
	// naming rules (see WorkloadName).
	Name string `json:"name"`
	// IPs are canonical, unique addresses.
	IPs  []string          `json:"ips,omitempty"`
	Tags map[string]string `json:"tags,omitempty"`
	// Attrs are other attributes: owner, os, folder, ...
	Attrs map[string]string `json:"attrs,omitempty"`
	// Observed is when the source last saw the object as described: a
	// CMDB row's update time, or the time of a vCenter sync.
	Observed time.Time `json:"observed"`
}

// Equal reports whether two records say the same thing, ignoring when.
func (r *Record) Equal(o *Record) bool {
	return r.Source == o.Source && r.Kind == o.Kind && r.Key == o.Key && r.Name == o.Name &&
		slices.Equal(r.IPs, o.IPs) && maps.Equal(r.Tags, o.Tags) && maps.Equal(r.Attrs, o.Attrs)
}

// maxNameLen is the policy package's limit on object names.
const maxNameLen = 253

// WorkloadName turns a name as a source writes it ("SRV_DB 01",
// "Web-1.Corp.Example") into a workload name: lowercase letters, digits,
// "-" and "."; "_" and spaces become "-". It fails for a name with nothing
// usable or with characters that cannot be mapped.
func WorkloadName(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("empty name")
	}
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.':
			b.WriteRune(c)
		case c == '_' || c == ' ':
			b.WriteByte('-')
		default:
			return "", fmt.Errorf("name %q: character %q cannot be part of a workload name", s, c)
		}
	}
	n := strings.Trim(b.String(), "-.")
	if n == "" {
		return "", fmt.Errorf("name %q has no letter or digit", s)
	}
	if len(n) > maxNameLen {
		return "", fmt.Errorf("name %q is %d characters long; the limit is %d", s, len(n), maxNameLen)
	}
	return n, nil
}

// ParseIP parses one workload address as a source gives it: no prefix
// length, no zone, not unspecified; IPv4-mapped IPv6 becomes IPv4. The
// result is canonical.
func ParseIP(s string) (string, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("bad IP address %q", s)
	}
	if a.Zone() != "" {
		return "", fmt.Errorf("bad IP address %q: a workload address has no zone", s)
	}
	if a.IsUnspecified() {
		return "", fmt.Errorf("bad IP address %q: unspecified", s)
	}
	return a.Unmap().String(), nil
}

// SplitIPs parses a cell holding several addresses separated by commas,
// semicolons or white space. Duplicates are dropped; order is kept.
func SplitIPs(cell string) ([]string, error) {
	fields := strings.FieldsFunc(cell, func(r rune) bool {
		return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '|'
	})
	var out []string
	for _, f := range fields {
		ip, err := ParseIP(f)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	return out, nil
}
