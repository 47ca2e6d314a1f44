package agent

import (
	"net/netip"
	"testing"

	"github.com/bulkhead/bulkhead/internal/flow"
)

// learningEnforcer is a fake enforcer whose L7 reader learned one
// connection.
type learningEnforcer struct {
	*fakeEnforcer
	conn netip.AddrPort
}

func (l learningEnforcer) AnnotateFlow(r *flow.Record) {
	if netip.AddrPortFrom(r.Dst, r.DstPort) == l.conn {
		r.App, r.TLSVersion, r.ServerName = "APP_HTTPS", "1.3", "shop.lab.test"
	}
}

func TestAnnotateFlow(t *testing.T) {
	cfg := Config{Manager: "127.0.0.1:1", StateDir: t.TempDir()}
	learning := learningEnforcer{newFake(), netip.MustParseAddrPort("10.0.0.2:443")}
	a, err := New(cfg, learning, quiet())
	if err != nil {
		t.Fatal(err)
	}
	r := flow.Record{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: 6, SrcPort: 40000, DstPort: 443}
	a.AnnotateFlow(&r)
	if r.App != "APP_HTTPS" || r.TLSVersion != "1.3" || r.ServerName != "shop.lab.test" {
		t.Errorf("annotated %+v, want what the enforcer learned", r)
	}

	// An enforcer that learns nothing (no L7 reader) leaves records alone.
	plain, err := New(cfg, newFake(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	r = flow.Record{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: 6, SrcPort: 40000, DstPort: 443}
	plain.AnnotateFlow(&r)
	if r.App != "" {
		t.Errorf("plain enforcer annotated %+v", r)
	}
}
