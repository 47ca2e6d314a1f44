package span

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/bulkhead/bulkhead/internal/nft"
)

// Session is a user logged on at a port range of an address: a session of
// a multi-user (RDSH) host, where each session gets its own source ports,
// so a connection's source port names its user.
type Session struct {
	User  string
	Addr  netip.Addr
	Ports nft.PortRange
}

// WithSessions gives the compiler the port-range sessions to key user
// rules by. At an ingress point, the connections from a session's ports
// are a peer of their own: members of the groups of the session's address
// and of its user's groups (users and directoryGroups, as the evaluator
// resolves them, names compared without case), so a rule whose source is
// a user group decides that user's connections only. A session of a user
// no rule source names adds nothing; where two sessions of one address
// overlap, the first (by address, then ports) keeps the overlap's ports
// and the later one is left out, since the kernel keys a port once.
func WithSessions(ss []Session) Option {
	return func(c *Compiler) { c.sessions = slices.Clone(ss) }
}

type sessRange struct {
	addr  netip.Addr
	ports nft.PortRange
}

func compareSessRange(a, b sessRange) int {
	if c := a.addr.Compare(b.addr); c != 0 {
		return c
	}
	if a.ports.Lo != b.ports.Lo {
		return int(a.ports.Lo) - int(b.ports.Lo)
	}
	return int(a.ports.Hi) - int(b.ports.Hi)
}

func (c *Compiler) isSession(id uint32) bool {
	_, ok := c.sessGroup[id]
	return ok
}

// indexSessions gives each distinct group set of the sessions an identity
// number after the evaluator's and adds it to identsOf, so that rules
// naming any of its groups name it as a peer.
func (c *Compiler) indexSessions() {
	if len(c.sessions) == 0 {
		return
	}
	// The groups of each user a rule source names.
	userGroups := map[string][]int32{}
	for g := range c.bySide[src] {
		if len(c.bySide[src][g]) == 0 {
			continue
		}
		m, ok := c.e.Members(c.e.GroupName(int32(g)))
		if !ok {
			continue
		}
		for _, u := range m.Users {
			u = strings.ToLower(u)
			userGroups[u] = append(userGroups[u], int32(g))
		}
	}
	if len(userGroups) == 0 {
		return
	}
	ss := make([]Session, 0, len(c.sessions))
	for _, s := range c.sessions {
		if !s.Addr.IsValid() || s.Ports.Lo > s.Ports.Hi || len(userGroups[strings.ToLower(s.User)]) == 0 {
			continue
		}
		s.Addr = s.Addr.Unmap().WithZone("")
		ss = append(ss, s)
	}
	slices.SortFunc(ss, func(a, b Session) int {
		if d := compareSessRange(sessRange{a.Addr, a.Ports}, sessRange{b.Addr, b.Ports}); d != 0 {
			return d
		}
		return strings.Compare(a.User, b.User)
	})
	c.sessGroup = map[uint32][]int32{}
	c.sessPorts = map[uint32][]sessRange{}
	byKey := map[string]uint32{}
	next := uint32(c.e.NumIdentities())
	var last *Session
	for i := range ss {
		s := &ss[i]
		if last != nil && last.Addr == s.Addr && s.Ports.Lo <= last.Ports.Hi {
			continue // overlaps the previous session of its address
		}
		last = s
		gs := slices.Concat(c.e.IdentityGroups(c.e.IdentityOf(s.Addr)), userGroups[strings.ToLower(s.User)])
		slices.Sort(gs)
		gs = slices.Compact(gs)
		k := string(groupKey(gs))
		id, ok := byKey[k]
		if !ok {
			id = next
			next++
			byKey[k] = id
			c.sessGroup[id] = gs
			for _, g := range gs {
				c.identsOf[g] = append(c.identsOf[g], id)
			}
		}
		c.sessPorts[id] = append(c.sessPorts[id], sessRange{s.Addr, s.Ports})
	}
}

func groupKey(gs []int32) []byte {
	b := make([]byte, 0, 4*len(gs))
	for _, g := range gs {
		b = append(b, byte(g>>24), byte(g>>16), byte(g>>8), byte(g))
	}
	return b
}
