package directory

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PortRange is the source ports of one session on a multi-user host
// (RDSH): each session connects only from its own range. The zero range is
// the whole address.
type PortRange struct{ Lo, Hi uint16 }

// Whole reports whether the range is the whole address.
func (p PortRange) Whole() bool { return p.Lo == 0 && p.Hi == 0 }

// Contains reports whether a source port is in the range; the whole
// address contains every port.
func (p PortRange) Contains(port uint16) bool { return p.Whole() || p.Lo <= port && port <= p.Hi }

func (p PortRange) String() string {
	if p.Whole() {
		return ""
	}
	if p.Lo == p.Hi {
		return strconv.Itoa(int(p.Lo))
	}
	return fmt.Sprintf("%d-%d", p.Lo, p.Hi)
}

// ParsePortRange reads "20000-20999" or "20000"; "" is the whole address.
func ParsePortRange(s string) (PortRange, error) {
	if s == "" {
		return PortRange{}, nil
	}
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		hi = lo
	}
	l, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	h, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if err1 != nil || err2 != nil || l == 0 || l > h {
		return PortRange{}, fmt.Errorf("ports %q: want a port range like 20000-20999 within 1-65535", s)
	}
	return PortRange{uint16(l), uint16(h)}, nil
}

// Session is one user logged on at an address, or at a port range of it,
// from Start until End (zero while open).
type Session struct {
	ID     int64 // given by the store; 0 until stored
	User   string
	Domain string
	IP     netip.Addr
	Ports  PortRange
	Start  time.Time
	End    time.Time
	// Source is the kind of event that opened it: windows, login or rdsh.
	Source string
	// LogonID is Windows' TargetLogonId, which its logoff event carries.
	LogonID string
}

// Open reports whether the session has not ended.
func (s *Session) Open() bool { return s.End.IsZero() }

// covers reports whether the session holds (port, at).
func (s *Session) covers(port uint16, at time.Time) bool {
	return s.Ports.Contains(port) && !at.Before(s.Start) && (s.End.IsZero() || at.Before(s.End))
}

// Table is the sessions the manager knows, by address. It is not safe for
// concurrent use; the manager guards it.
type Table struct {
	byIP map[netip.Addr][]*Session
}

// NewTable indexes sessions.
func NewTable(sessions []Session) *Table {
	t := &Table{byIP: map[netip.Addr][]*Session{}}
	for i := range sessions {
		s := sessions[i]
		t.add(&s)
	}
	return t
}

func (t *Table) add(s *Session) {
	s.IP = s.IP.Unmap()
	t.byIP[s.IP] = append(t.byIP[s.IP], s)
}

// Who returns the session of the user behind a connection from (ip, port)
// at a time. A session of a port range that holds the port beats a session
// of the whole address (several users share an RDSH host, one uses a
// desktop); among equals the latest started wins (a desktop handed to the
// next user before the last one's logoff arrived).
func (t *Table) Who(ip netip.Addr, port uint16, at time.Time) (Session, bool) {
	var best *Session
	for _, s := range t.byIP[ip.Unmap()] {
		if !s.covers(port, at) {
			continue
		}
		if best == nil || better(s, best) {
			best = s
		}
	}
	if best == nil {
		return Session{}, false
	}
	return *best, true
}

func better(a, b *Session) bool {
	if a.Ports.Whole() != b.Ports.Whole() {
		return !a.Ports.Whole()
	}
	if !a.Start.Equal(b.Start) {
		return a.Start.After(b.Start)
	}
	return a.ID > b.ID
}

// Sessions lists the sessions at ip (every address when ip is invalid),
// newest first.
func (t *Table) Sessions(ip netip.Addr) []Session {
	var out []Session
	for a, ss := range t.byIP {
		if ip.IsValid() && a != ip.Unmap() {
			continue
		}
		for _, s := range ss {
			out = append(out, *s)
		}
	}
	slices.SortFunc(out, func(a, b Session) int {
		if c := b.Start.Compare(a.Start); c != 0 {
			return c
		}
		return int(b.ID - a.ID)
	})
	return out
}

// Apply records an event: a logon opens a session (or is a resend of one
// already open), a logoff ends the open session it names. It returns the
// session changed, which the caller stores; an error says why the event
// changed nothing.
func (t *Table) Apply(e Event) (*Session, error) {
	if e.Logon {
		for _, s := range t.byIP[e.IP.Unmap()] {
			if s.User == e.User && s.Ports == e.Ports && s.Start.Equal(e.Start) && s.LogonID == e.LogonID {
				// The same logon sent again, maybe now with its end.
				if !e.End.IsZero() {
					s.End = e.End
				}
				return s, nil
			}
		}
		s := &Session{User: e.User, Domain: e.Domain, IP: e.IP, Ports: e.Ports, Start: e.Start, End: e.End, Source: e.Source, LogonID: e.LogonID}
		t.add(s)
		return s, nil
	}
	// A logoff: the open session with its logon id, else the latest open
	// session of the user at the address and ports.
	var match *Session
	for _, ss := range t.byIP {
		for _, s := range ss {
			if !s.Open() || s.User != e.User || s.Start.After(e.End) {
				continue
			}
			if e.LogonID != "" {
				if s.LogonID != e.LogonID {
					continue
				}
			} else if s.IP != e.IP.Unmap() || s.Ports != e.Ports {
				continue
			}
			if match == nil || s.Start.After(match.Start) {
				match = s
			}
		}
	}
	if match == nil {
		if e.LogonID != "" {
			return nil, fmt.Errorf("no open session of %s with logon id %s", e.User, e.LogonID)
		}
		where := e.IP.String()
		if !e.Ports.Whole() {
			where += " ports " + e.Ports.String()
		}
		return nil, fmt.Errorf("no open session of %s at %s", e.User, where)
	}
	match.End = e.End
	return match, nil
}

// Prune forgets sessions that ended before a time; it returns how many.
func (t *Table) Prune(before time.Time) int {
	n := 0
	for ip, ss := range t.byIP {
		kept := ss[:0]
		for _, s := range ss {
			if !s.Open() && s.End.Before(before) {
				n++
				continue
			}
			kept = append(kept, s)
		}
		if len(kept) == 0 {
			delete(t.byIP, ip)
		} else {
			t.byIP[ip] = kept
		}
	}
	return n
}
