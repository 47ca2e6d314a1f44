package span

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/nft"
)

// TestWireRoundTrip: Decode(Encode(st)) is st, and encoding again gives
// the same bytes.
func TestWireRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	n, bytesTotal, named := 0, 0, 0
	for i := range 300 {
		s := randomSet(t, rng, singleV4Universe)
		e, err := eval.Compile(s)
		if err != nil {
			t.Fatal(err)
		}
		dp, _, err := newDataPlane(t, e, s)
		if err != nil {
			continue
		}
		for h, st := range dp.states {
			b, err := Encode(st)
			if err != nil {
				t.Fatalf("set %d host %s: %v", i, h, err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("set %d host %s: %v\n%s", i, h, err, b)
			}
			if !reflect.DeepEqual(got, st) {
				t.Fatalf("set %d host %s: round trip changed the state:\n got %+v\nwant %+v", i, h, got, st)
			}
			again, _ := Encode(got)
			if !bytes.Equal(again, b) {
				t.Fatalf("set %d host %s: re-encoding differs", i, h)
			}
			n++
			bytesTotal += len(b)
			if len(st.FQDNSets) > 0 {
				named++
			}
		}
	}
	t.Logf("%d states (%d with FQDN sets), %d bytes on average", n, named, bytesTotal/max(n, 1))
	if named == 0 {
		t.Error("no state with FQDN sets: the round trip does not cover them")
	}
}

func TestDecodeErrors(t *testing.T) {
	const ok = `{"format":"bulkhead.hoststate.v1+json","revision":3,` +
		`"identities":[{"lo":"10.0.0.1","hi":"10.0.0.9","id":1}],` +
		`"workloads":[{"name":"w","interface":"bhww","egress":[{"peer":1,"proto":6,"ports":[80,80],"rule":101,"action":"allow","log":true}],` +
		`"ingress":[{"peer":"any","proto":0,"ports":[0,65535],"rule":102,"action":"reject"}]}],` +
		`"egressDefault":{"rule":1,"action":"drop"},"ingressDefault":{"rule":1,"action":"drop"}}`
	st, err := Decode([]byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	want := &nft.HostState{
		Revision:   3,
		Identities: []nft.IdentityRange{{Lo: mustAddr("10.0.0.1"), Hi: mustAddr("10.0.0.9"), Identity: 1}},
		Workloads: []nft.Workload{{Name: "w", Interface: "bhww",
			Egress:  []nft.Entry{{Peer: 1, Proto: nft.ProtoTCP, Ports: nft.Port(80), Verdict: nft.Verdict{Rule: 101, Action: nft.Allow, Log: true}}},
			Ingress: []nft.Entry{{Peer: nft.AnyPeer, Proto: nft.ProtoAny, Ports: nft.AllPorts, Verdict: nft.Verdict{Rule: 102, Action: nft.Reject}}},
		}},
		EgressDefault:  nft.Verdict{Rule: 1, Action: nft.Drop},
		IngressDefault: nft.Verdict{Rule: 1, Action: nft.Drop},
	}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("decoded %+v\nwant %+v", st, want)
	}
	if b, _ := Encode(st); string(b) != ok {
		t.Errorf("Encode:\n got %s\nwant %s", b, ok)
	}

	tests := []struct{ name, in, want string }{
		{"unknown field", strings.Replace(ok, `"revision":3`, `"revision":3,"extra":1`, 1), `unknown field "extra"`},
		{"other format", strings.Replace(ok, "v1+json", "v2+json", 1), `format "bulkhead.hoststate.v2+json"`},
		{"no format", strings.Replace(ok, `"format":"bulkhead.hoststate.v1+json",`, ``, 1), `format ""`},
		{"trailing data", ok + `{}`, "data after the state"},
		{"bad action", strings.Replace(ok, `"action":"reject"`, `"action":"deny"`, 1), `action "deny"`},
		{"bad peer", strings.Replace(ok, `"peer":"any"`, `"peer":"all"`, 1), `peer "all"`},
		{"reserved peer number", strings.Replace(ok, `"peer":"any"`, `"peer":4294967295`, 1), `peer 4294967295`},
		{"bad address", strings.Replace(ok, `"10.0.0.9"`, `"10.0.0.x"`, 1), `10.0.0.x`},
		{"invalid state", strings.Replace(ok, `"ports":[80,80]`, `"ports":[81,80]`, 1), `ports 81-80: empty range`},
		{"missing default", strings.Replace(ok, `"egressDefault":{"rule":1,"action":"drop"},`, ``, 1), `egress default`},
	}
	for _, tt := range tests {
		_, err := Decode([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
