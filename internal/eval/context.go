package eval

import (
	"fmt"
	"strings"

	"github.com/bulkhead/bulkhead/internal/policy"
)

// normalizeFQDN lowers a DNS name and drops its root dot. Names the DPI
// reports are already in this form, so it only allocates for odd input.
func normalizeFQDN(name string) string {
	name = strings.TrimSuffix(name, ".")
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}

// fqdnPattern is one name of a group or profile: an exact name, a wildcard
// "*.example.com" (any deeper name, not the apex) kept as its suffix
// ".example.com", or "*" (any name).
type fqdnPattern struct {
	exact  string
	suffix string
	any    bool
}

func parseFQDNPattern(p string) fqdnPattern {
	p = normalizeFQDN(p)
	switch {
	case p == "*":
		return fqdnPattern{any: true}
	case strings.HasPrefix(p, "*."):
		return fqdnPattern{suffix: p[1:]}
	default:
		return fqdnPattern{exact: p}
	}
}

// matches reports whether a normalized, non-empty name matches.
func (p fqdnPattern) matches(name string) bool {
	switch {
	case p.any:
		return true
	case p.suffix != "":
		return len(name) > len(p.suffix) && strings.HasSuffix(name, p.suffix)
	default:
		return name == p.exact
	}
}

// fqdnIndex finds the groups a destination name makes an endpoint member of
// with one or a few map lookups: exact names map to their whole answer
// (wildcards that also match them included), and each wildcard suffix maps
// to the groups of every wildcard that covers it, so the longest matching
// suffix is the answer for names that are not listed exactly.
type fqdnIndex struct {
	exact  map[string][]int32
	suffix map[string][]int32
	any    []int32
}

// groups returns the sorted groups (nesting parents included) whose FQDNs
// match a normalized name.
func (x *fqdnIndex) groups(name string) []int32 {
	if name == "" {
		return nil
	}
	if g, ok := x.exact[name]; ok {
		return g
	}
	for i := 1; i < len(name); i++ {
		if name[i] != '.' {
			continue
		}
		if g, ok := x.suffix[name[i:]]; ok {
			return g
		}
	}
	return x.any
}

// buildFQDNIndex takes each group's patterns (direct membership) and the
// nesting closure of a group.
func buildFQDNIndex(direct map[fqdnPattern][]int32, closure func(int32) []int32) fqdnIndex {
	x := fqdnIndex{exact: map[string][]int32{}, suffix: map[string][]int32{}}
	var wild []fqdnPattern
	for p := range direct {
		if !p.any && p.suffix != "" {
			wild = append(wild, p)
		}
	}
	collect := func(name string, self fqdnPattern) []int32 {
		var gs []int32
		for p, groups := range direct {
			if p == self || (p.exact == "" && p.matches(name)) {
				for _, g := range groups {
					gs = append(gs, closure(g)...)
				}
			}
		}
		return sortedUnique(gs)
	}
	for p := range direct {
		switch {
		case p.any:
			x.any = collect("", p)
		case p.suffix != "":
			// A name whose longest listed suffix is p.suffix matches p and
			// every wildcard with a shorter suffix of it, and "*".
			var gs []int32
			for _, q := range wild {
				if strings.HasSuffix(p.suffix, q.suffix) {
					gs = append(gs, direct[q]...)
				}
			}
			gs = append(gs, direct[fqdnPattern{any: true}]...)
			var closed []int32
			for _, g := range gs {
				closed = append(closed, closure(g)...)
			}
			x.suffix[p.suffix] = sortedUnique(closed)
		default:
			x.exact[p.exact] = collect(p.exact, p)
		}
	}
	return x
}

// profile is a compiled ContextProfile.
type profile struct {
	apps  []appMatch
	fqdns []fqdnPattern
}

type appMatch struct {
	name     string
	min, max int // TLS version as major*1000+minor; 0 = no bound
}

// tlsApps are AppIDs that always run over TLS, so a rule on APP_TLS
// covers them.
var tlsApps = map[string]bool{"APP_TLS": true, "APP_HTTPS": true}

const appTLS = "APP_TLS"

func compileProfile(p *policy.ContextProfile) (*profile, error) {
	out := &profile{}
	for i, a := range p.Spec.Apps {
		m := appMatch{name: a.Name}
		var ok bool
		if a.MinVersion != "" {
			if m.min, ok = parseVersion(a.MinVersion); !ok {
				return nil, fmt.Errorf("apps[%d].minVersion %q: not a version like 1.2", i, a.MinVersion)
			}
		}
		if a.MaxVersion != "" {
			if m.max, ok = parseVersion(a.MaxVersion); !ok {
				return nil, fmt.Errorf("apps[%d].maxVersion %q: not a version like 1.2", i, a.MaxVersion)
			}
		}
		out.apps = append(out.apps, m)
	}
	for _, f := range p.Spec.FQDNs {
		out.fqdns = append(out.fqdns, parseFQDNPattern(f))
	}
	return out, nil
}

// matches reports whether the flow's L7 context satisfies the profile. A
// flow without L7 context satisfies none. fqdn is normalized.
func (p *profile) matches(f *Flow, fqdn string) bool {
	if f.App == "" && fqdn == "" {
		return false
	}
	if len(p.apps) > 0 {
		ok := false
		for i := range p.apps {
			if p.apps[i].matches(f) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(p.fqdns) > 0 {
		if fqdn == "" {
			return false
		}
		for _, pat := range p.fqdns {
			if pat.matches(fqdn) {
				return true
			}
		}
		return false
	}
	return true
}

func (m *appMatch) matches(f *Flow) bool {
	if f.App == "" {
		return false
	}
	if f.App != m.name && !(m.name == appTLS && (tlsApps[f.App] || f.TLSVersion != "")) {
		return false
	}
	if m.min == 0 && m.max == 0 {
		return true
	}
	v, ok := parseVersion(f.TLSVersion)
	if !ok {
		return false
	}
	return (m.min == 0 || v >= m.min) && (m.max == 0 || v <= m.max)
}

// parseVersion reads "1.2" as 1002 so versions compare as numbers
// ("1.10" > "1.9"). It does not allocate.
func parseVersion(s string) (int, bool) {
	major, minor, seenDot, digits := 0, 0, false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.' && !seenDot && digits > 0:
			seenDot, digits = true, 0
		case '0' <= c && c <= '9' && digits < 4:
			digits++
			if seenDot {
				minor = minor*10 + int(c-'0')
			} else {
				major = major*10 + int(c-'0')
			}
		default:
			return 0, false
		}
	}
	if digits == 0 {
		return 0, false
	}
	return major*1000 + minor + 1, true // +1 keeps "0.0" apart from "no bound"
}
