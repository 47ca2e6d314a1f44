package nft

import (
	"net/netip"
	"sort"
)

// L7 context of a connection, as the queue reader learned it: the same two
// attributes eval.Flow carries (App and TLSVersion), in the same form.
type L7Context struct {
	App        string // AppID such as "APP_TLS"; "" when unknown
	TLSVersion string // "1.2"; "" when not TLS or not known
}

// tlsApps are the AppIDs that always run over TLS, so that APP_TLS covers
// them: the evaluator's list (internal/eval/context.go).
var tlsApps = map[string]bool{"APP_TLS": true, "APP_HTTPS": true}

// Matches reports whether a connection's L7 context satisfies the profile,
// exactly as the evaluator decides it for an apps-only profile: a
// connection without an application satisfies none.
func (p *Profile) Matches(c L7Context) bool {
	if c.App == "" {
		return false
	}
	for i := range p.Apps {
		if p.Apps[i].matches(c) {
			return true
		}
	}
	return false
}

func (m *AppMatch) matches(c L7Context) bool {
	if m.Name == "" {
		return true
	}
	if c.App != m.Name && !(m.Name == "APP_TLS" && (tlsApps[c.App] || c.TLSVersion != "")) {
		return false
	}
	if m.MinVersion == "" && m.MaxVersion == "" {
		return true
	}
	v, ok := ParseVersion(c.TLSVersion)
	if !ok {
		return false
	}
	lo, _ := ParseVersion(m.MinVersion)
	hi, _ := ParseVersion(m.MaxVersion)
	return (lo == 0 || v >= lo) && (hi == 0 || v <= hi)
}

// ParseVersion reads "1.2" as a number that orders versions ("1.10" >
// "1.9"), the evaluator's reading; 0 and false for anything else.
func ParseVersion(s string) (int, bool) {
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
	return major*1000 + minor + 1, true
}

// Conn is a connection as the data plane sees it at one point: the peer's
// address (destination at egress, source at ingress), the IP protocol and
// the destination port (type<<8|code for ICMP).
type Conn struct {
	Peer  netip.Addr
	Proto uint8
	Port  uint16
	// SrcPort is the source port at ingress: a session range there may
	// give the peer's ports an identity of their own (SessionRange); 0
	// when unknown.
	SrcPort uint16
}

// Decider answers, for one HostState, what the kernel's first-match walk
// decides at one point, and what it decides once an L7 context is known.
// It is immutable and safe for concurrent use.
type Decider struct {
	st      *HostState
	v4, v6  []IdentityRange // sorted
	byIface map[string]*Workload
}

// NewDecider indexes st, which must be valid and must not change.
func NewDecider(st *HostState) (*Decider, error) {
	v4, v6, err := st.validate()
	if err != nil {
		return nil, err
	}
	d := &Decider{st: st, v4: v4, v6: v6, byIface: make(map[string]*Workload, len(st.Workloads))}
	for i := range st.Workloads {
		d.byIface[st.Workloads[i].Interface] = &st.Workloads[i]
	}
	return d, nil
}

// State returns the state d decides with.
func (d *Decider) State() *HostState { return d.st }

// Workload returns the local workload behind a host-side interface.
func (d *Decider) Workload(iface string) (*Workload, bool) {
	w, ok := d.byIface[iface]
	return w, ok
}

// Identity returns the identity the kernel gives an address.
func (d *Decider) Identity(a netip.Addr) Identity {
	a = a.Unmap()
	rs := d.v6
	if a.Is4() {
		rs = d.v4
	}
	i := sort.Search(len(rs), func(i int) bool { return !rs[i].Hi.Less(a) })
	if i < len(rs) && !a.Less(rs[i].Lo) {
		return rs[i].Identity
	}
	return World
}

// Point returns the mark the kernel writes at one point: the first entry of
// list matching the connection at L3/L4 decides, an L7 entry then leaves it
// pending; the default if none matches. With ctx (known L7 context), an L7
// entry whose profile the context does not satisfy is passed over and the
// walk goes on, so the result is never pending.
func (d *Decider) Point(w *Workload, ingress bool, c Conn, ctx *L7Context) Mark {
	list, def := w.Egress, d.st.EgressDefault
	if ingress {
		list, def = w.Ingress, d.st.IngressDefault
	}
	peer := d.Identity(c.Peer)
	if ingress {
		peer = d.sessionPeer(c, peer)
	}
	for i := range list {
		e := &list[i]
		if e.Peer != AnyPeer && e.Peer != peer {
			continue
		}
		if e.Proto != ProtoAny && (e.Proto != c.Proto || c.Port < e.Ports.Lo || c.Port > e.Ports.Hi) {
			continue
		}
		if e.FQDN != 0 {
			continue // the FQDN sets are the kernel's (see fqdn.go)
		}
		if e.Profile == 0 {
			return MakeMark(e.Verdict, ingress)
		}
		if ctx == nil {
			return MakePendingMark(e.Verdict, ingress)
		}
		if d.st.Profiles[e.Profile-1].Matches(*ctx) {
			return MakeMark(e.Verdict, ingress)
		}
	}
	return MakeMark(def, ingress)
}

// Combine joins the marks of a connection's two points as the kernel does:
// the egress point's if it drops or rejects (or there is no ingress point),
// else the ingress point's. A pending point makes the whole pending; a
// pending egress point with an allowing ingress point keeps egress's mark.
func Combine(egress, ingress Mark, hasEgress, hasIngress bool) Mark {
	switch {
	case !hasIngress:
		return egress
	case !hasEgress:
		return ingress
	case !egress.Pending() && egress.Action() != Allow:
		return egress
	case ingress.Pending() || ingress.Action() != Allow:
		return ingress
	case egress.Pending():
		return egress
	}
	return ingress
}
