package span

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/bulkhead/bulkhead/internal/nft"
)

// FuzzDecode: a desired state from the wire never crashes the agent's
// decoder, and whatever it accepts encodes and decodes to the same state.
func FuzzDecode(f *testing.F) {
	v := nft.Verdict{Rule: 1, Action: nft.Drop}
	rdsh := netip.MustParseAddr("10.0.1.10")
	seeds := []*nft.HostState{
		{EgressDefault: v, IngressDefault: v},
		{
			Revision:       3,
			Identities:     []nft.IdentityRange{{Lo: rdsh, Hi: rdsh, Identity: 1}},
			Sessions:       []nft.SessionRange{{Addr: rdsh, Ports: nft.Ports(20000, 20999), Identity: 2}},
			EgressDefault:  v,
			IngressDefault: v,
			Workloads: []nft.Workload{{Name: "hr", Interface: "bhwhr", Ingress: []nft.Entry{
				{Peer: 2, Proto: nft.ProtoTCP, Ports: nft.Port(443), Verdict: nft.Verdict{Rule: 101, Action: nft.Allow}},
			}}},
		},
	}
	for _, st := range seeds {
		b, err := Encode(st)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"format":"bulkhead.hoststate.v1+json","revision":1,"egressDefault":{"rule":1,"action":"drop"},"ingressDefault":{"rule":1,"action":"drop"},"sessions":[{"addr":"10.0.0.1","ports":[9,3],"id":1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Encode(st)
		if err != nil {
			t.Fatalf("decoded state does not encode: %v", err)
		}
		back, err := Decode(again)
		if err != nil {
			t.Fatalf("encoded state does not decode: %v\n%s", err, again)
		}
		if !reflect.DeepEqual(normalize(st), normalize(back)) {
			t.Fatalf("round trip changed the state:\n%+v\n%+v", st, back)
		}
	})
}

// normalize makes empty lists nil, which the wire form leaves out.
func normalize(st *nft.HostState) *nft.HostState {
	c := *st
	if len(c.Identities) == 0 {
		c.Identities = nil
	}
	if len(c.Sessions) == 0 {
		c.Sessions = nil
	}
	if len(c.Workloads) == 0 {
		c.Workloads = nil
	}
	if len(c.Profiles) == 0 {
		c.Profiles = nil
	}
	if len(c.FQDNSets) == 0 {
		c.FQDNSets = nil
	}
	return &c
}
