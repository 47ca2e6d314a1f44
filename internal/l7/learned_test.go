package l7

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/nft"
)

func TestTableExpiresAndRenews(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tb := NewTable(4, time.Minute)
	tb.now = func() time.Time { return now }
	k := Tuple{Src: cli, Dst: srv, Proto: 6, SPort: 40000, DPort: 443}
	tb.Put(k, Learned{App: "APP_HTTPS", TLSVersion: "1.3", ServerName: "shop.lab.test"})

	// The same connection named with IPv4-mapped addresses is found.
	mapped := k
	mapped.Src, mapped.Dst = netip.AddrFrom16(cli.As16()), netip.AddrFrom16(srv.As16())
	now = now.Add(50 * time.Second)
	if l, ok := tb.Lookup(mapped); !ok || l.App != "APP_HTTPS" || l.ServerName != "shop.lab.test" {
		t.Fatalf("lookup = %+v %v", l, ok)
	}
	// The lookup renewed it: 50 s later it is still there.
	now = now.Add(50 * time.Second)
	if _, ok := tb.Lookup(k); !ok {
		t.Fatal("entry expired although looked up within its TTL")
	}
	now = now.Add(61 * time.Second)
	if _, ok := tb.Lookup(k); ok {
		t.Fatal("entry outlived its TTL")
	}
	other := k
	other.DPort = 22
	if _, ok := tb.Lookup(other); ok {
		t.Fatal("found a connection never put")
	}
}

func TestTableBounded(t *testing.T) {
	tb := NewTable(3, time.Hour)
	key := func(i int) Tuple { return Tuple{Src: cli, Dst: srv, Proto: 6, SPort: uint16(40000 + i), DPort: 22} }
	for i := range 10 {
		tb.Put(key(i), Learned{App: fmt.Sprint("APP_", i)})
		tb.Put(key(i), Learned{App: fmt.Sprint("APP_", i)}) // a second put of one tuple takes no slot
	}
	if n := tb.Len(); n != 3 {
		t.Fatalf("%d entries, want at most 3", n)
	}
	for i := range 10 {
		_, ok := tb.Lookup(key(i))
		if want := i >= 7; ok != want {
			t.Errorf("connection %d present = %v, want %v (the newest 3 stay)", i, ok, want)
		}
	}
}

// TestTableExpiredComesBack: a tuple that expired and is put again keeps
// its new entry when its old slot is reused.
func TestTableExpiredComesBack(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tb := NewTable(2, time.Minute)
	tb.now = func() time.Time { return now }
	a := Tuple{Src: cli, Dst: srv, Proto: 6, SPort: 1, DPort: 22}
	b := Tuple{Src: cli, Dst: srv, Proto: 6, SPort: 2, DPort: 22}
	tb.Put(a, Learned{App: "APP_SSH"}) // slot 0
	now = now.Add(2 * time.Minute)
	tb.Lookup(a)                       // expired, gone from the map
	tb.Put(a, Learned{App: "APP_SSH"}) // slot 1
	tb.Put(b, Learned{App: "APP_SSH"}) // slot 0 again: must not evict a
	if _, ok := tb.Lookup(a); !ok {
		t.Error("a's new entry was evicted with its old slot")
	}
}

// nameClassifier is wordClassifier with a server name.
type nameClassifier struct{ wordClassifier }

func (nameClassifier) ServerName() string { return "shop.lab.test" }

// noneClassifier recognises nothing.
type noneClassifier struct{}

func (noneClassifier) Feed(bool, []byte) (nft.L7Context, bool) { return nft.L7Context{}, true }
func (noneClassifier) Finish() nft.L7Context                   { return nft.L7Context{} }

// TestReaderPublishes: a decided connection with an application is in the
// reader's table under its original direction, whichever side spoke first;
// one without an application is not.
func TestReaderPublishes(t *testing.T) {
	r := testReader(t, 4)
	r.cfg.Classifier = func(uint8) Classifier { return &nameClassifier{} }
	qp := &queuedPacket{ID: 1, Mark: uint32(nft.MarkL7Pending | nft.MarkL7Reply), InDev: 2, OutDev: 1,
		Payload: tcp4(srv, cli, 8443, 40000, 1000, "APP_TLS/1.3 hello")}
	r.handle(qp)
	k := Tuple{Src: cli, Dst: srv, Proto: 6, SPort: 40000, DPort: 8443}
	l, ok := r.Learned().Lookup(k)
	if !ok || l.App != "APP_TLS" || l.TLSVersion != "1.3" || l.ServerName != "shop.lab.test" || l.At.IsZero() {
		t.Fatalf("learned %+v %v, want APP_TLS 1.3 shop.lab.test", l, ok)
	}

	// Nothing recognised: nothing published.
	r.cfg.Classifier = func(uint8) Classifier { return noneClassifier{} }
	r.handle(&queuedPacket{ID: 2, Mark: uint32(nft.MarkL7Pending), InDev: 1, OutDev: 2,
		Payload: tcp4(cli, srv, 40001, 8443, 1, " ")})
	if l, ok := r.Learned().Lookup(Tuple{Src: cli, Dst: srv, Proto: 6, SPort: 40001, DPort: 8443}); ok {
		t.Errorf("unclassified connection published: %+v", l)
	}
}

// TestDPIServerName: with the real DPI classifier the HTTP Host is the
// server name.
func TestDPIServerName(t *testing.T) {
	r := testReader(t, 1)
	r.cfg.Classifier = DPI
	r.handle(&queuedPacket{ID: 1, Mark: uint32(nft.MarkL7Pending), InDev: 1, OutDev: 2,
		Payload: tcp4(cli, srv, 40002, 8443, 1, "GET / HTTP/1.1\r\nHost: shop.lab.test\r\nUser-Agent: t\r\n\r\n")})
	l, ok := r.Learned().Lookup(Tuple{Src: cli, Dst: srv, Proto: 6, SPort: 40002, DPort: 8443})
	if !ok || l.App != "APP_HTTP" || l.ServerName != "shop.lab.test" {
		t.Fatalf("learned %+v %v, want APP_HTTP with Host shop.lab.test", l, ok)
	}
}

// TestTableConcurrent: the reader puts while the collector looks up.
func TestTableConcurrent(t *testing.T) {
	tb := NewTable(64, time.Minute)
	key := func(i int) Tuple { return Tuple{Src: cli, Dst: srv, Proto: 6, SPort: uint16(i % 200), DPort: 443} }
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 5000 {
			tb.Put(key(i), Learned{App: "APP_HTTPS"})
		}
	}()
	for i := range 5000 {
		if l, ok := tb.Lookup(key(i)); ok && l.App != "APP_HTTPS" {
			t.Fatalf("lookup %d: %+v", i, l)
		}
	}
	<-done
	if n := tb.Len(); n > 64 {
		t.Errorf("%d entries, want at most 64", n)
	}
}
