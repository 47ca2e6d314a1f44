package enforce

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead/bulkhead/internal/agentapi"
	"github.com/bulkhead/bulkhead/internal/idsagent"
	"github.com/bulkhead/bulkhead/internal/netlab"
	"github.com/bulkhead/bulkhead/internal/nft"
	"github.com/bulkhead/bulkhead/internal/span"
)

// TestIDSFollowsState: the IDS reader runs, and the inspection table
// exists, exactly while the realized state has IDS workloads; an empty
// state and Remove take both away.
func TestIDSFollowsState(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace, nftables tables, NFQUEUE and NFLOG bindings")
	}
	ns, err := netlab.NewNamespace(netlab.TestPrefix() + "-ids")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Delete() })
	e, err := New(filepath.Join(netlab.RunDir, ns.Name), nft.Config{},
		WithIDS(idsagent.Config{Host: "h", Sink: func([]byte) {}}, slog.Default()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	ctx := context.Background()
	hasIDSTable := func() bool {
		t.Helper()
		out, err := ns.Exec(ctx, "nft", "list", "tables")
		if err != nil {
			t.Fatalf("nft list tables: %v\n%s", err, out)
		}
		return strings.Contains(string(out), "inet "+nft.DefaultTable+nft.IDSTableSuffix)
	}
	st := &nft.HostState{
		Identities: []nft.IdentityRange{{Lo: netip.MustParseAddr("10.0.0.1"), Hi: netip.MustParseAddr("10.0.0.9"), Identity: 1}},
		Workloads: []nft.Workload{{Name: "w", Interface: "bhww",
			Egress: []nft.Entry{{Peer: 1, Proto: nft.ProtoTCP, Ports: nft.Port(80), Verdict: nft.Verdict{Rule: 101, Action: nft.Allow}}}}},
		EgressDefault:  nft.Verdict{Rule: 1, Action: nft.Drop},
		IngressDefault: nft.Verdict{Rule: 1, Action: nft.Drop},
	}
	plain, err := span.Encode(st)
	if err != nil {
		t.Fatal(err)
	}
	st.IDS = &nft.IDSState{Version: "local@1",
		Rules: []string{`alert http any any -> any any (msg:"x"; http.uri; content:"/etc/passwd"; sid:1000001;)`},
		Workloads: []nft.IDSWorkload{{Name: "w", Interface: "bhww", Mode: nft.IDSPrevent, Profiles: []string{"p"},
			SIDs: []uint32{1000001}}}}
	withIDS, err := span.Encode(st)
	if err != nil {
		t.Fatal(err)
	}
	if dec, err := span.Decode(withIDS); err != nil || !dec.HasIDS() {
		t.Skipf("span's wire encoding does not carry the IDS part yet (err %v)", err)
	}

	step := func(rev int64, format string, payload []byte, want bool) {
		t.Helper()
		if err := e.Apply(ctx, rev, format, payload); err != nil {
			t.Fatal(err)
		}
		_, running := e.IDSStats()
		if running != want || hasIDSTable() != want {
			t.Fatalf("revision %d: reader running %v, IDS table %v, want %v", rev, running, hasIDSTable(), want)
		}
	}
	step(1, span.Format, plain, false)
	step(2, span.Format, withIDS, true)
	if _, ok, err := e.Verify(ctx); err != nil || !ok {
		t.Errorf("verify with IDS: %v %v", ok, err)
	}
	step(3, span.Format, plain, false)
	step(4, span.Format, withIDS, true)
	step(5, agentapi.FormatEmpty, nil, false)
	step(6, span.Format, withIDS, true)
	if err := e.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if _, running := e.IDSStats(); running || hasIDSTable() {
		t.Errorf("after Remove: reader running %v, IDS table %v", running, hasIDSTable())
	}
}
