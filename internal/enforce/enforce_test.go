package enforce

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead/bulkhead/internal/agentapi"
	"github.com/bulkhead/bulkhead/internal/netlab"
	"github.com/bulkhead/bulkhead/internal/nft"
	"github.com/bulkhead/bulkhead/internal/span"
)

// TestEnforcerAgainstKernel: desired states reach the kernel of the managed
// namespace, drift made with the nft tool is seen and repaired, "enforce
// nothing" removes the table, and a bad desired state leaves the old one.
func TestEnforcerAgainstKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace and nftables tables")
	}
	ns, err := netlab.NewNamespace(netlab.TestPrefix() + "-enf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Delete() })
	e, err := New(filepath.Join(netlab.RunDir, ns.Name), nft.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	ctx := context.Background()
	tables := func() string {
		t.Helper()
		out, err := ns.Exec(ctx, "nft", "list", "tables")
		if err != nil {
			t.Fatalf("nft list tables: %v\n%s", err, out)
		}
		return string(out)
	}
	verify := func(wantRev int64, wantOK bool) {
		t.Helper()
		rev, ok, err := e.Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ok != wantOK || (wantOK && rev != wantRev) {
			t.Fatalf("Verify: revision %d ok %v, want %d ok %v", rev, ok, wantRev, wantOK)
		}
	}
	payload, err := span.Encode(&nft.HostState{
		Identities: []nft.IdentityRange{{Lo: netip.MustParseAddr("10.0.0.1"), Hi: netip.MustParseAddr("10.0.0.9"), Identity: 1}},
		Workloads: []nft.Workload{{Name: "w", Interface: "bhww",
			Egress: []nft.Entry{{Peer: 1, Proto: nft.ProtoTCP, Ports: nft.Port(80), Verdict: nft.Verdict{Rule: 101, Action: nft.Allow}}}}},
		EgressDefault:  nft.Verdict{Rule: 1, Action: nft.Drop},
		IngressDefault: nft.Verdict{Rule: 1, Action: nft.Drop},
	})
	if err != nil {
		t.Fatal(err)
	}

	if err := e.Apply(ctx, 5, span.Format, payload); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tables(), "inet bulkhead") {
		t.Fatalf("no table after Apply:\n%s", tables())
	}
	verify(5, true)

	// Someone deletes our table: drift, then repaired by applying again.
	if out, err := ns.Exec(ctx, "nft", "delete", "table", "inet", "bulkhead"); err != nil {
		t.Fatalf("nft delete: %v\n%s", err, out)
	}
	verify(0, false)
	if err := e.Apply(ctx, 5, span.Format, payload); err != nil {
		t.Fatal(err)
	}
	verify(5, true)

	// A bad desired state is refused and the enforced one stays.
	if err := e.Apply(ctx, 6, "no-such-format", payload); err == nil {
		t.Fatal("unknown format accepted")
	}
	if err := e.Apply(ctx, 6, span.Format, []byte(`{"format":"bulkhead.hoststate.v1+json","bogus":1}`)); err == nil {
		t.Fatal("malformed payload accepted")
	}
	verify(5, true)

	// Nothing to enforce: the table goes.
	if err := e.Apply(ctx, 7, agentapi.FormatEmpty, nil); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(tables(), "inet bulkhead") {
		t.Fatalf("table left after an empty desired state:\n%s", tables())
	}
	verify(7, true)

	if err := e.Apply(ctx, 8, span.Format, payload); err != nil {
		t.Fatal(err)
	}
	if err := e.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(tables(), "inet bulkhead") {
		t.Fatalf("table left after Remove:\n%s", tables())
	}
}
