package dnssnoop

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Matcher holds FQDN pattern groups, numbered by their index, with the
// semantics of the policy evaluator (internal/eval): a name is compared in
// lower case without its final dot; "*.example.com" matches any deeper name
// (a.example.com, a.b.example.com) but not example.com itself; "*" matches
// every name; anything else matches only itself. It is immutable.
type Matcher struct {
	exact  map[string][]int
	suffix map[string][]int // ".example.com" -> groups with "*.example.com"
	any    []int
	groups int
}

// NewMatcher compiles pattern groups; group i answers as id i.
func NewMatcher(groups [][]string) (*Matcher, error) {
	m := &Matcher{exact: map[string][]int{}, suffix: map[string][]int{}, groups: len(groups)}
	for id, pats := range groups {
		for j, p := range pats {
			n := strings.ToLower(strings.TrimSuffix(p, "."))
			if err := checkPattern(n); err != nil {
				return nil, fmt.Errorf("dnssnoop: pattern group %d, pattern %d %q: %w", id, j, p, err)
			}
			switch {
			case n == "*":
				m.any = addID(m.any, id)
			case strings.HasPrefix(n, "*."):
				m.suffix[n[1:]] = addID(m.suffix[n[1:]], id)
			default:
				m.exact[n] = addID(m.exact[n], id)
			}
		}
	}
	return m, nil
}

func addID(ids []int, id int) []int {
	for _, x := range ids {
		if x == id {
			return ids
		}
	}
	return append(ids, id)
}

// checkPattern refuses what can never match a name: empty labels, a
// wildcard anywhere but alone in the first label, overlong names.
func checkPattern(n string) error {
	if n == "*" {
		return nil
	}
	rest := strings.TrimPrefix(n, "*.")
	if rest == "" || len(rest) > MaxNameLen {
		return fmt.Errorf("not a domain name")
	}
	for l := range strings.SplitSeq(rest, ".") {
		switch {
		case l == "":
			return fmt.Errorf("empty label")
		case len(l) > 63:
			return fmt.Errorf("label longer than 63 bytes")
		case strings.ContainsAny(l, "* \t"):
			return fmt.Errorf("a wildcard may only be the whole first label")
		}
	}
	return nil
}

// Groups is how many pattern groups the matcher holds.
func (m *Matcher) Groups() int { return m.groups }

// AppendIDs appends the ids of the groups a normalized name matches, each
// once. It allocates only to grow dst.
func (m *Matcher) AppendIDs(dst []int, name string) []int {
	if name == "" {
		return dst
	}
	start := len(dst)
	add := func(ids []int) {
		for _, id := range ids {
			dup := false
			for _, x := range dst[start:] {
				if x == id {
					dup = true
					break
				}
			}
			if !dup {
				dst = append(dst, id)
			}
		}
	}
	add(m.exact[name])
	for i := 1; i < len(name); i++ {
		if name[i] == '.' {
			add(m.suffix[name[i:]])
		}
	}
	add(m.any)
	return dst
}

// Matches reports whether a name (any case, final dot or not) matches
// group id.
func (m *Matcher) Matches(id int, name string) bool {
	var buf [8]int
	for _, x := range m.AppendIDs(buf[:0], strings.ToLower(strings.TrimSuffix(name, "."))) {
		if x == id {
			return true
		}
	}
	return false
}

// Membership says that an address belongs to group ID until Until: the
// latest expiry among its names that match the group.
type Membership struct {
	ID    int
	Until time.Time
}

// Scratch is reusable working space for Memberships.
type Scratch struct {
	names []Binding
	ids   []int
}

// Memberships appends the groups ip currently belongs to through the names
// the cache holds for it. With a reused Scratch and dst it allocates
// nothing once they have grown.
func (m *Matcher) Memberships(c *Cache, ip netip.Addr, now time.Time, s *Scratch, dst []Membership) []Membership {
	s.names = c.AppendNames(s.names[:0], ip, now)
	start := len(dst)
	for _, b := range s.names {
		s.ids = m.AppendIDs(s.ids[:0], b.Name)
		for _, id := range s.ids {
			found := false
			for i := range dst[start:] {
				if d := &dst[start+i]; d.ID == id {
					if b.Expires.After(d.Until) {
						d.Until = b.Expires
					}
					found = true
					break
				}
			}
			if !found {
				dst = append(dst, Membership{ID: id, Until: b.Expires})
			}
		}
	}
	return dst
}
