package idsagent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"

	"github.com/bulkhead/bulkhead/internal/netlab"
	"github.com/bulkhead/bulkhead/internal/nft"
)

const httpPort = 8080

// kernelLab is one host with a client workload c and a web server
// workload s (a Go HTTP server), the policy table allowing everything,
// and an IDS reader on the host's namespace.
type kernelLab struct {
	host   *netlab.Host
	c, s   *netlab.Workload
	table  *nft.Table
	state  *nft.HostState
	reader *Reader
	sink   *sink
	eveLog string

	mu    sync.Mutex
	paths []string   // request paths the server answered
	conns []net.Conn // the server's side of every connection
}

func newKernelLab(t *testing.T, ids *nft.IDSState) *kernelLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("idsagent: needs root (network namespaces, nftables, NFQUEUE, NFLOG, conntrack)")
	}
	topo, err := netlab.New(netlab.TestPrefix())
	if err != nil {
		t.Fatal(err)
	}
	l := &kernelLab{sink: &sink{}}
	t.Cleanup(func() {
		if l.table != nil {
			l.table.Remove()
		}
		if err := topo.Close(); err != nil {
			t.Errorf("close topology: %v", err)
		}
	})
	if l.host, err = topo.AddHost("h1"); err != nil {
		t.Fatal(err)
	}
	if l.c, err = topo.AddWorkload(l.host, netlab.WorkloadConfig{Name: "c"}); err != nil {
		t.Fatal(err)
	}
	if l.s, err = topo.AddWorkload(l.host, netlab.WorkloadConfig{Name: "s"}); err != nil {
		t.Fatal(err)
	}
	if l.table, err = nft.New(nft.Config{NetNS: l.host.NS.Fd()}); err != nil {
		t.Fatal(err)
	}
	for i := range ids.Workloads {
		ids.Workloads[i].Interface = l.s.Interface
	}
	allow := nft.Verdict{Rule: 1, Action: nft.Allow}
	l.state = &nft.HostState{
		Revision:       1,
		Workloads:      []nft.Workload{{Name: "c", Interface: l.c.Interface}, {Name: "s", Interface: l.s.Interface}},
		EgressDefault:  allow,
		IngressDefault: allow,
		IDS:            ids,
	}
	if _, err := l.table.Apply(l.state); err != nil {
		t.Fatal(err)
	}
	l.serve(t)

	l.eveLog = filepath.Join(t.TempDir(), "eve.json")
	l.reader, err = New(Config{NetNS: l.host.NS.Fd(), Host: "h1", Sink: l.sink.send, EVELog: l.eveLog})
	if err != nil {
		t.Fatal(err)
	}
	setState(t, l.reader, ids)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := l.reader.Run(ctx); err != nil {
			t.Errorf("reader: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	time.Sleep(100 * time.Millisecond) // bound by now
	return l
}

// serve runs a Go HTTP server in s.
func (l *kernelLab) serve(t *testing.T) {
	t.Helper()
	var ln net.Listener
	err := l.s.NS.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", httpPort))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			l.mu.Lock()
			l.paths = append(l.paths, r.URL.Path)
			l.mu.Unlock()
			io.WriteString(w, "ok")
		}),
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateNew {
				l.mu.Lock()
				l.conns = append(l.conns, c)
				l.mu.Unlock()
			}
		},
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// dial opens a connection from c to the web server.
func (l *kernelLab) dial(t *testing.T) net.Conn {
	t.Helper()
	conn, err := l.c.Dial("tcp", netip.AddrPortFrom(l.s.IPv4, httpPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// get sends one request on conn and reads the answer's body.
func get(conn net.Conn, br *bufio.Reader, path string, timeout time.Duration) (string, error) {
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: s\r\nUser-Agent: idsagent-test\r\n\r\n", path); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func (l *kernelLab) served(path string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.paths {
		if p == path {
			return true
		}
	}
	return false
}

// TestKernelDetect: a copy of the traffic is inspected: the exploit
// request raises the alert through the sink and is answered; a new
// signature set put in service mid-connection inspects that connection's
// next request.
func TestKernelDetect(t *testing.T) {
	l := newKernelLab(t, &nft.IDSState{Version: "test@1", Rules: testRules, Workloads: []nft.IDSWorkload{
		{Name: "s", Mode: nft.IDSDetect, Profiles: []string{"web-detect"}, SIDs: []uint32{1000001, 1000002}},
	}})
	conn := l.dial(t)
	br := bufio.NewReader(conn)
	if body, err := get(conn, br, "/etc/passwd", 5*time.Second); err != nil || body != "ok" {
		t.Fatalf("exploit request: %q %v, want an answer (detect does not block)", body, err)
	}
	ev, ok := l.sink.wait(1000001, 5*time.Second)
	if !ok {
		t.Fatalf("no alert; reader %+v, alerts %+v", l.reader.Stats(), l.sink.get())
	}
	if ev.SrcIP != l.c.IPv4.String() || ev.DestIP != l.s.IPv4.String() || ev.DestPort != httpPort || ev.Alert.Signature != "test exploit" ||
		ev.Alert.Action != "allowed" || ev.HTTP == nil {
		t.Errorf("alert %+v", ev)
	}
	if b := ev.Bulkhead; b == nil || b.Host != "h1" || b.DestWorkload != "s" || b.SrcWorkload != "" || b.Mode != "detect" ||
		b.Interface != l.s.Interface || b.Profile != "web-detect" {
		t.Errorf("bulkhead object %+v", ev.Bulkhead)
	}
	// IPv6 too.
	conn6, err := l.c.Dial("tcp", netip.AddrPortFrom(l.s.IPv6, httpPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn6.Close()
	if body, err := get(conn6, bufio.NewReader(conn6), "/etc/passwd", 5*time.Second); err != nil || body != "ok" {
		t.Fatalf("IPv6 exploit request: %q %v", body, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !l.sink.has(1000001, l.s.IPv6.String()) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !l.sink.has(1000001, l.s.IPv6.String()) {
		t.Errorf("no alert for the IPv6 request: %+v", l.sink.get())
	}

	// The drop rule of a detect profile alerts, the request passes.
	if body, err := get(conn, br, "/bin/sh", 5*time.Second); err != nil || body != "ok" {
		t.Fatalf("drop rule in detect mode: %q %v, want an answer", body, err)
	}
	if _, ok := l.sink.wait(1000002, 5*time.Second); !ok {
		t.Errorf("no alert for the drop rule in detect mode")
	}

	// New signatures while the connection is open.
	ids2 := *l.state.IDS
	ids2.Version = "test@2"
	ids2.Workloads = []nft.IDSWorkload{{Name: "s", Interface: l.s.Interface, Mode: nft.IDSDetect, SIDs: []uint32{1000003}}}
	l.state.IDS, l.state.Revision = &ids2, 2
	if _, err := l.table.Apply(l.state); err != nil {
		t.Fatal(err)
	}
	setState(t, l.reader, &ids2)
	if body, err := get(conn, br, "/later", 5*time.Second); err != nil || body != "ok" {
		t.Fatalf("request after the swap: %q %v", body, err)
	}
	if _, ok := l.sink.wait(1000003, 5*time.Second); !ok {
		t.Errorf("the connection opened before the swap was not inspected with the new set: %+v", l.reader.Stats())
	}
	if s := l.reader.Stats(); s.Copies == 0 || s.Queued != 0 || s.Swaps != 2 {
		t.Errorf("stats %+v: want copies only and two swaps", s)
	}
	// Every alert is in the EVE log as well, one record per line.
	b, err := os.ReadFile(l.eveLog)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != int(l.reader.Stats().Alerts) || !strings.Contains(lines[0], `"event_type":"alert"`) {
		t.Errorf("EVE log has %d lines for %d alerts:\n%s", len(lines), l.reader.Stats().Alerts, b)
	}
}

// blockedDrops reads the counter of the inspection chain's blocked-flow
// rule.
func (l *kernelLab) blockedDrops(t *testing.T) int {
	t.Helper()
	out, err := l.host.NS.Exec(context.Background(), "nft", "list", "chain", "inet", nft.DefaultTable+nft.IDSTableSuffix, nft.ChainIDS)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`counter packets (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no counter in\n%s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// ctMark is the ct mark of the connection conn (client side).
func (l *kernelLab) ctMark(t *testing.T, conn net.Conn) (nft.Mark, bool) {
	t.Helper()
	ct, err := conntrack.Dial(&netlink.Config{NetNS: l.host.NS.Fd()})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	flows, err := ct.Dump(nil)
	if err != nil {
		t.Fatal(err)
	}
	local := conn.LocalAddr().(*net.TCPAddr).AddrPort()
	for _, f := range flows {
		o := f.TupleOrig
		if o.IP.SourceAddress.Unmap() == local.Addr().Unmap() && o.Proto.SourcePort == local.Port() {
			return nft.Mark(f.Mark), true
		}
	}
	return 0, false
}

// TestKernelPrevent: inline, the exploit request never reaches the server
// and the client is reset; the flow is marked and its later packets die in
// the kernel without reaching the reader; other connections work.
func TestKernelPrevent(t *testing.T) {
	l := newKernelLab(t, &nft.IDSState{Version: "test@1", Rules: testRules, Workloads: []nft.IDSWorkload{
		{Name: "s", Mode: nft.IDSPrevent, Profiles: []string{"web-prevent"}, SIDs: []uint32{1000001, 1000002}, PreventSIDs: []uint32{1000002}},
	}})
	conn := l.dial(t)
	br := bufio.NewReader(conn)
	if body, err := get(conn, br, "/index.html", 5*time.Second); err != nil || body != "ok" {
		t.Fatalf("normal request: %q %v", body, err)
	}
	bad := l.dial(t)
	_, err := get(bad, bufio.NewReader(bad), "/bin/sh", 2*time.Second)
	if err == nil || !(errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		t.Errorf("exploit request: %v, want a reset or no answer", err)
	} else {
		t.Logf("exploit request: %v", err)
	}
	if l.served("/bin/sh") {
		t.Errorf("the server received the exploit")
	}
	ev, ok := l.sink.wait(1000002, 5*time.Second)
	if !ok || ev.Alert.Action != "blocked" || ev.Bulkhead == nil || ev.Bulkhead.Mode != "prevent" {
		t.Errorf("alert %+v (found %v), want a blocked alert in prevent mode", ev, ok)
	}
	if m, ok := l.ctMark(t, bad); !ok || m&nft.MarkIDSBlock == 0 {
		t.Errorf("blocked flow's ct mark %#x (found %v), want the IDS bit", uint32(m), ok)
	}
	// The server still holds its side: what it sends now is dropped by
	// the kernel, and the reader never sees it.
	l.mu.Lock()
	var srvSide net.Conn
	for _, c := range l.conns {
		if c.RemoteAddr().String() == bad.LocalAddr().String() {
			srvSide = c
		}
	}
	l.mu.Unlock()
	if srvSide == nil {
		t.Fatal("no server side of the blocked connection")
	}
	drops, queued := l.blockedDrops(t), l.reader.Stats().Queued
	if _, err := srvSide.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.blockedDrops(t) == drops && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if l.blockedDrops(t) == drops {
		t.Errorf("the server's later packet was not dropped by the ct mark rule")
	}
	if q := l.reader.Stats().Queued; q != queued {
		t.Errorf("the reader saw %d packets after the block", q-queued)
	}
	// Clean traffic goes on, old and new connections.
	if body, err := get(conn, br, "/cart", 5*time.Second); err != nil || body != "ok" {
		t.Errorf("earlier connection: %q %v", body, err)
	}
	fresh := l.dial(t)
	if body, err := get(fresh, bufio.NewReader(fresh), "/etc/passwd", 5*time.Second); err != nil || body != "ok" {
		t.Errorf("new connection with an alert-only match: %q %v", body, err)
	}
	if _, ok := l.sink.wait(1000001, 5*time.Second); !ok {
		t.Errorf("no alert for the alert-only rule in prevent mode")
	}
	if s := l.reader.Stats(); s.Blocks != 1 || s.Copies != 0 {
		t.Errorf("stats %+v: want one block and no copies", s)
	}

	// A profile with preventAction drop makes the alert signature block
	// (a block sid); only the engines change, the kernel side does not.
	st := *l.state.IDS
	st.Version = "test@2"
	st.Workloads = slices.Clone(st.Workloads)
	st.Workloads[0].PreventSIDs = []uint32{1000001, 1000002}
	st.Workloads[0].BlockSIDs = []uint32{1000001}
	setState(t, l.reader, &st)
	n := len(l.sink.get())
	alerted := l.dial(t)
	if _, err := get(alerted, bufio.NewReader(alerted), "/x/etc/passwd", 2*time.Second); err == nil {
		t.Errorf("alert signature with preventAction drop: the request was answered")
	}
	if l.served("/x/etc/passwd") {
		t.Errorf("the server received a request an enforced alert signature matched")
	}
	deadline = time.Now().Add(5 * time.Second)
	for l.reader.Stats().Blocks != 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s := l.reader.Stats(); s.Blocks != 2 {
		t.Errorf("stats %+v: want a second block", s)
	}
	var blocked bool
	for _, ev := range l.sink.get()[n:] {
		blocked = blocked || ev.Alert.SignatureID == 1000001 && ev.Alert.Action == "blocked"
	}
	if !blocked {
		t.Errorf("no blocked alert for the enforced alert signature: %+v", l.sink.get()[n:])
	}
	if body, err := get(conn, br, "/cart", 5*time.Second); err != nil || body != "ok" {
		t.Errorf("earlier connection after the swap: %q %v", body, err)
	}
}
