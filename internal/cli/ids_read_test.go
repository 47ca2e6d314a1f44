package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// writeIDSCapture writes a pcap (raw IP) of one HTTP connection whose
// request carries a path traversal, and one UDP datagram.
func writeIDSCapture(t *testing.T, path string) {
	t.Helper()
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	w := pcapgo.NewWriter(fh)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	client, server := net.IPv4(192, 0, 2, 7), net.IPv4(10, 1, 0, 80)
	pkt := func(src, dst net.IP, sport, dport uint16, seq, ack uint32, syn, ackf bool, payload string) []byte {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ack, SYN: syn, ACK: ackf, PSH: payload != "", Window: 65535}
		tcp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp, gopacket.Payload(payload)); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	req := "GET /download?f=../../../etc/shadow HTTP/1.1\r\nHost: files.example\r\nUser-Agent: Wget/1.21\r\n\r\n"
	pkts := [][]byte{
		pkt(client, server, 50000, 80, 100, 0, true, false, ""),
		pkt(server, client, 80, 50000, 900, 101, true, true, ""),
		pkt(client, server, 50000, 80, 101, 901, false, true, ""),
		pkt(client, server, 50000, 80, 101, 901, false, true, req[:30]),
		pkt(client, server, 50000, 80, 131, 901, false, true, req[30:]),
		pkt(server, client, 80, 50000, 901, 101+uint32(len(req)), false, true, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
	}
	ts := time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)
	for i, p := range pkts {
		ci := gopacket.CaptureInfo{Timestamp: ts.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(p), Length: len(p)}
		if err := w.WritePacket(ci, p); err != nil {
			t.Fatal(err)
		}
	}
}

const idsReadRules = `# test rules
alert http $EXTERNAL_NET any -> $HOME_NET any (msg:"TEST traversal in URI"; flow:established,to_server; http.uri; content:"../"; classtype:web-application-attack; metadata:attack_target Web_Server; sid:9000001; rev:3;)
alert tcp any any -> any 80 (msg:"TEST shadow on the stream"; flow:to_server; content:"/etc/shadow"; sid:9000002; rev:1;)
alert http any any -> any any (msg:"TEST not found"; flow:to_client; http.stat_code; content:"404"; sid:9000003; rev:1;)
alert tcp any any -> any any (msg:"TEST lookbehind"; pcre:"/(?<=a)b/"; sid:9000004; rev:1;)
this is not a rule
`

// runSplit runs the CLI with stdout and stderr apart.
func runSplit(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := NewRoot(strings.NewReader(""), &out, &errOut)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func TestIDSRead(t *testing.T) {
	dir := t.TempDir()
	capture := filepath.Join(dir, "web.pcap")
	writeIDSCapture(t, capture)
	rulesFile := filepath.Join(dir, "test.rules")
	os.WriteFile(rulesFile, []byte(idsReadRules), 0o600)
	varsFile := filepath.Join(dir, "vars")
	os.WriteFile(varsFile, []byte("HOME_NET [10.0.0.0/8]\nEXTERNAL_NET !$HOME_NET\n"), 0o600)

	out, errOut, err := runSplit(t, "ids", "read", "--rules", rulesFile, "--vars", varsFile, capture)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 EVE lines:\n%s\nstderr:\n%s", out, errOut)
	}
	var evs []map[string]any
	for _, l := range lines {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		evs = append(evs, ev)
	}
	sigs := map[float64]map[string]any{}
	for _, ev := range evs {
		if ev["event_type"] != "alert" {
			t.Errorf("event_type %v", ev["event_type"])
		}
		al := ev["alert"].(map[string]any)
		sigs[al["signature_id"].(float64)] = ev
	}
	uri := sigs[9000001]
	if uri == nil || uri["src_ip"] != "192.0.2.7" || uri["dest_port"] != float64(80) || uri["app_proto"] != "http" ||
		uri["http"].(map[string]any)["url"] != "/download?f=../../../etc/shadow" ||
		uri["alert"].(map[string]any)["category"] != "Web Application Attack" || uri["alert"].(map[string]any)["rev"] != float64(3) ||
		uri["timestamp"] != "2026-11-24T02:00:00.004000+0000" {
		t.Errorf("sid 9000001: %v", uri)
	}
	if sigs[9000002] == nil || sigs[9000003] == nil || sigs[9000003]["direction"] != "to_client" {
		t.Errorf("alerts %v", sigs)
	}
	for _, want := range []string{"sid 9000004", "lookbehind", "test.rules:6", "3 rules loaded, 2 skipped; 6 packets, 1 flows, 3 alerts"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}

	out, _, err = runSplit(t, "ids", "read", "--rules", rulesFile, "--vars", varsFile, "-o", "table", capture)
	if err != nil || !strings.HasPrefix(out, "TIME") || !strings.Contains(out, "1:9000001:3") || !strings.Contains(out, "tcp/http") || !strings.Contains(out, "192.0.2.7:50000") {
		t.Errorf("table: %v\n%s", err, out)
	}
	out, _, err = runSplit(t, "ids", "read", "--rules", rulesFile, "-o", "json", capture)
	var arr []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &arr) != nil {
		t.Errorf("json: %v\n%s", err, out)
	}

	// A capture error fails the command; rule problems do not.
	notCapture := filepath.Join(dir, "notes.txt")
	os.WriteFile(notCapture, []byte("hello"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"ids", "read", "--rules", rulesFile, notCapture}, "not a pcap or pcapng capture"},
		{[]string{"ids", "read", "--rules", rulesFile, filepath.Join(dir, "missing.pcap")}, "missing.pcap"},
		{[]string{"ids", "read", "--rules", filepath.Join(dir, "missing.rules"), capture}, "missing.rules"},
		{[]string{"ids", "read", capture}, "--rules"},
		{[]string{"ids", "read", "--rules", rulesFile, "-o", "yaml", capture}, "want eve, table or json"},
	} {
		_, errOut, err := runSplit(t, c.args...)
		if err == nil || !strings.Contains(err.Error()+errOut, c.want) {
			t.Errorf("%v: err %v, want %q", c.args, err, c.want)
		}
	}
}
