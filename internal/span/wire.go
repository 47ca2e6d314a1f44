package span

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"

	"github.com/bulkhead/bulkhead/internal/nft"
)

// Format names the encoding of Encode in the manager-agent channel.
const Format = "bulkhead.hoststate.v1+json"

// The wire form has its own field names so that renaming a Go field of the
// nft package never changes what agents of another version read. Empty
// lists are left out; actions are words; AnyPeer is "any".
//
// L7 (profiles, an entry's profile, l7FailOpen) only adds fields that are
// left out when empty, so a state without L7 entries has the bytes it had
// before; an agent too old to enforce L7 refuses a state with them (unknown
// field) instead of enforcing it without its L7 rules. FQDN sets and an
// entry's fqdn set do the same, and so do users' session ranges.
type wireState struct {
	Format         string         `json:"format"`
	Revision       uint64         `json:"revision"`
	Identities     []wireRange    `json:"identities,omitempty"`
	Workloads      []wireWorkload `json:"workloads,omitempty"`
	EgressDefault  wireVerdict    `json:"egressDefault"`
	IngressDefault wireVerdict    `json:"ingressDefault"`
	Profiles       []wireProfile  `json:"profiles,omitempty"`
	L7FailOpen     bool           `json:"l7FailOpen,omitempty"`
	FQDNSets       []wireFQDNSet  `json:"fqdnSets,omitempty"`
	Sessions       []wireSession  `json:"sessions,omitempty"`
	// IDS is left out when nil (ids.go), like L7 and FQDN fields.
	IDS *wireIDS `json:"ids,omitempty"`
}

// wireSession is an nft.SessionRange: a user's source ports at an address.
type wireSession struct {
	Addr  netip.Addr `json:"addr"`
	Ports [2]uint16  `json:"ports"`
	ID    uint32     `json:"id"`
}

type wireFQDNSet struct {
	Patterns []string `json:"patterns"`
	Family   uint8    `json:"family,omitempty"`
}

type wireProfile struct {
	Apps []wireApp `json:"apps"`
}

type wireApp struct {
	Name       string `json:"name,omitempty"`
	MinVersion string `json:"minVersion,omitempty"`
	MaxVersion string `json:"maxVersion,omitempty"`
}

type wireRange struct {
	Lo netip.Addr `json:"lo"`
	Hi netip.Addr `json:"hi"`
	ID uint32     `json:"id"`
}

type wireWorkload struct {
	Name      string      `json:"name"`
	Interface string      `json:"interface"`
	Egress    []wireEntry `json:"egress,omitempty"`
	Ingress   []wireEntry `json:"ingress,omitempty"`
}

type wireVerdict struct {
	Rule   uint32     `json:"rule"`
	Action wireAction `json:"action"`
	Log    bool       `json:"log,omitempty"`
}

type wireEntry struct {
	Peer  wirePeer  `json:"peer"`
	Proto uint8     `json:"proto"`
	Ports [2]uint16 `json:"ports"`
	wireVerdict
	Profile int `json:"profile,omitempty"`
	FQDN    int `json:"fqdn,omitempty"`
}

type wirePeer nft.Identity

func (p wirePeer) MarshalJSON() ([]byte, error) {
	if nft.Identity(p) == nft.AnyPeer {
		return []byte(`"any"`), nil
	}
	return strconv.AppendUint(nil, uint64(p), 10), nil
}

func (p *wirePeer) UnmarshalJSON(b []byte) error {
	if string(b) == `"any"` {
		*p = wirePeer(nft.AnyPeer)
		return nil
	}
	n, err := strconv.ParseUint(string(b), 10, 32)
	if err != nil || nft.Identity(n) == nft.AnyPeer {
		return fmt.Errorf("peer %s: want an identity number or \"any\"", b)
	}
	*p = wirePeer(n)
	return nil
}

type wireAction nft.Action

func (a wireAction) MarshalJSON() ([]byte, error) {
	switch nft.Action(a) {
	case nft.Allow, nft.Drop, nft.Reject:
		return strconv.AppendQuote(nil, nft.Action(a).String()), nil
	}
	return nil, fmt.Errorf("action %d: want allow, drop or reject", a)
}

func (a *wireAction) UnmarshalJSON(b []byte) error {
	for _, x := range []nft.Action{nft.Allow, nft.Drop, nft.Reject} {
		if string(b) == strconv.Quote(x.String()) {
			*a = wireAction(x)
			return nil
		}
	}
	return fmt.Errorf("action %s: want \"allow\", \"drop\" or \"reject\"", b)
}

func toWireVerdict(v nft.Verdict) wireVerdict {
	return wireVerdict{Rule: v.Rule, Action: wireAction(v.Action), Log: v.Log}
}

func (v wireVerdict) verdict() nft.Verdict {
	return nft.Verdict{Rule: v.Rule, Action: nft.Action(v.Action), Log: v.Log}
}

func toWireEntries(es []nft.Entry) []wireEntry {
	if len(es) == 0 {
		return nil
	}
	out := make([]wireEntry, len(es))
	for i, e := range es {
		out[i] = wireEntry{Peer: wirePeer(e.Peer), Proto: e.Proto, Ports: [2]uint16{e.Ports.Lo, e.Ports.Hi}, wireVerdict: toWireVerdict(e.Verdict), Profile: e.Profile, FQDN: e.FQDN}
	}
	return out
}

func fromWireEntries(ws []wireEntry) []nft.Entry {
	if len(ws) == 0 {
		return nil
	}
	out := make([]nft.Entry, len(ws))
	for i, w := range ws {
		out[i] = nft.Entry{Peer: nft.Identity(w.Peer), Proto: w.Proto, Ports: nft.PortRange{Lo: w.Ports[0], Hi: w.Ports[1]}, Verdict: w.verdict(), Profile: w.Profile, FQDN: w.FQDN}
	}
	return out
}

// Encode returns the wire form of st (Format). Equal states give equal
// bytes.
func Encode(st *nft.HostState) ([]byte, error) {
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("span: encode revision %d: %w", st.Revision, err)
	}
	w := wireState{
		Format:         Format,
		Revision:       st.Revision,
		EgressDefault:  toWireVerdict(st.EgressDefault),
		IngressDefault: toWireVerdict(st.IngressDefault),
		L7FailOpen:     st.L7FailOpen,
	}
	for _, p := range st.Profiles {
		wp := wireProfile{Apps: make([]wireApp, len(p.Apps))}
		for i, a := range p.Apps {
			wp.Apps[i] = wireApp(a)
		}
		w.Profiles = append(w.Profiles, wp)
	}
	for _, f := range st.FQDNSets {
		w.FQDNSets = append(w.FQDNSets, wireFQDNSet{Patterns: f.Patterns, Family: f.Family})
	}
	for _, r := range st.Identities {
		w.Identities = append(w.Identities, wireRange{Lo: r.Lo, Hi: r.Hi, ID: uint32(r.Identity)})
	}
	for _, x := range st.Sessions {
		w.Sessions = append(w.Sessions, wireSession{Addr: x.Addr, Ports: [2]uint16{x.Ports.Lo, x.Ports.Hi}, ID: uint32(x.Identity)})
	}
	for _, wl := range st.Workloads {
		w.Workloads = append(w.Workloads, wireWorkload{
			Name: wl.Name, Interface: wl.Interface,
			Egress: toWireEntries(wl.Egress), Ingress: toWireEntries(wl.Ingress),
		})
	}
	ids, err := toWireIDS(st.IDS)
	if err != nil {
		return nil, fmt.Errorf("span: encode revision %d: %w", st.Revision, err)
	}
	w.IDS = ids
	b, err := json.Marshal(&w)
	if err != nil {
		return nil, fmt.Errorf("span: encode revision %d: %w", st.Revision, err)
	}
	return b, nil
}

// Decode reads what Encode wrote. It is strict: an unknown field, another
// format, trailing data or a state nft would refuse is an error.
func Decode(b []byte) (*nft.HostState, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var w wireState
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("span: decode host state: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("span: decode host state: data after the state")
	}
	if w.Format != Format {
		return nil, fmt.Errorf("span: decode host state: format %q: want %q", w.Format, Format)
	}
	st := &nft.HostState{
		Revision:       w.Revision,
		EgressDefault:  w.EgressDefault.verdict(),
		IngressDefault: w.IngressDefault.verdict(),
		L7FailOpen:     w.L7FailOpen,
	}
	for _, p := range w.Profiles {
		np := nft.Profile{Apps: make([]nft.AppMatch, len(p.Apps))}
		for i, a := range p.Apps {
			np.Apps[i] = nft.AppMatch(a)
		}
		st.Profiles = append(st.Profiles, np)
	}
	for _, f := range w.FQDNSets {
		st.FQDNSets = append(st.FQDNSets, nft.FQDNSet{Patterns: f.Patterns, Family: f.Family})
	}
	for _, r := range w.Identities {
		st.Identities = append(st.Identities, nft.IdentityRange{Lo: r.Lo, Hi: r.Hi, Identity: nft.Identity(r.ID)})
	}
	for _, x := range w.Sessions {
		st.Sessions = append(st.Sessions, nft.SessionRange{Addr: x.Addr, Ports: nft.Ports(x.Ports[0], x.Ports[1]), Identity: nft.Identity(x.ID)})
	}
	for _, wl := range w.Workloads {
		st.Workloads = append(st.Workloads, nft.Workload{
			Name: wl.Name, Interface: wl.Interface,
			Egress: fromWireEntries(wl.Egress), Ingress: fromWireEntries(wl.Ingress),
		})
	}
	ids, err := fromWireIDS(w.IDS)
	if err != nil {
		return nil, fmt.Errorf("span: decode revision %d: %w", st.Revision, err)
	}
	st.IDS = ids
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("span: decode revision %d: %w", st.Revision, err)
	}
	return st, nil
}
