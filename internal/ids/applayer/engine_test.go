package applayer_test

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/bulkhead/bulkhead/internal/ids"
	"github.com/bulkhead/bulkhead/internal/ids/applayer"
	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/ids/stream"
)

// tcpPackets turns a conversation into the IPv4 packets of one TCP
// connection from 10.0.0.1:40000 to 10.0.0.2:port (handshake, data in
// segments of at most mss bytes, each acknowledged, FIN both ways).
func tcpPackets(t *testing.T, conv []applayer.Segment, port uint16, mss int) [][]byte {
	t.Helper()
	cli, srv := net.IP{10, 0, 0, 1}, net.IP{10, 0, 0, 2}
	seq := [2]uint32{1000, 5000}
	var out [][]byte
	pkt := func(dir stream.Dir, flags string, payload []byte) {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: cli, DstIP: srv}
		tcp := &layers.TCP{SrcPort: 40000, DstPort: layers.TCPPort(port), Seq: seq[dir], Ack: seq[dir^1], Window: 65535}
		if dir == stream.ToClient {
			ip.SrcIP, ip.DstIP = srv, cli
			tcp.SrcPort, tcp.DstPort = tcp.DstPort, tcp.SrcPort
		}
		tcp.SYN, tcp.FIN = strings.Contains(flags, "S"), strings.Contains(flags, "F")
		tcp.ACK = strings.Contains(flags, "A")
		tcp.PSH = len(payload) > 0
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		buf := gopacket.NewSerializeBuffer()
		opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
		if err := gopacket.SerializeLayers(buf, opts, ip, tcp, gopacket.Payload(payload)); err != nil {
			t.Fatal(err)
		}
		out = append(out, slices.Clone(buf.Bytes()))
		seq[dir] += uint32(len(payload))
		if tcp.SYN || tcp.FIN {
			seq[dir]++
		}
	}
	pkt(stream.ToServer, "S", nil)
	pkt(stream.ToClient, "SA", nil)
	pkt(stream.ToServer, "A", nil)
	for _, s := range conv {
		for d := s.Data; len(d) > 0; {
			n := min(len(d), mss)
			pkt(s.Dir, "A", d[:n])
			pkt(s.Dir^1, "A", nil)
			d = d[n:]
		}
	}
	pkt(stream.ToServer, "FA", nil)
	pkt(stream.ToClient, "FA", nil)
	pkt(stream.ToServer, "A", nil)
	return out
}

// alertsBySID runs rules over packets and counts the alerts per sid.
func alertsBySID(t *testing.T, ruleText string, pkts [][]byte) map[uint32]int {
	t.Helper()
	rs, probs := rules.Read(strings.NewReader(ruleText), "k.rules", nil)
	if len(probs) > 0 {
		t.Fatalf("rules did not load: %+v", probs)
	}
	e, probs := ids.Compile(rs)
	if len(probs) > 0 {
		t.Fatalf("rules did not compile: %+v", probs)
	}
	got := map[uint32]int{}
	in := ids.NewInspector(ids.InspectorConfig{OnAlert: func(a *ids.Alert) { got[a.Rule.SID]++ }})
	ts := time.Unix(1700000000, 0)
	for i, p := range pkts {
		in.Packet(ts.Add(time.Duration(i)*time.Millisecond), p, e, false)
	}
	in.CloseAll(ts.Add(time.Minute), e)
	return got
}

// TestEngineNewBuffers runs rules on the new buffers through the engine
// over real packets of a real TLS handshake (two-certificate chain) and
// of HTTP requests: each matches exactly as often as Suricata would alert.
func TestEngineNewBuffers(t *testing.T) {
	conv := applayer.ChainConversation(t)
	ja3s := applayer.JA3S(t, conv)
	tlsRules := fmt.Sprintf(`alert tls any any -> any any (msg:"second certificate"; flow:established,to_client; tls.certs; content:"root-only.k.example"; sid:1001;)
alert tls any any -> any any (msg:"leaf certificate"; flow:established,to_client; tls.certs; content:"Shop Inc"; sid:1002;)
alert tls any any -> any any (msg:"no such certificate"; tls.certs; content:"not in any certificate"; sid:1003;)
alert tls any any -> any any (msg:"ja3s"; ja3s.hash; content:"%s"; sid:1004;)
alert tls any any -> any any (msg:"ja3 string"; ja3.string; content:"771,"; startswith; sid:1005;)
alert tls any any -> any any (msg:"serial and ja3s"; tls.cert_serial; content:"00:E7:F9"; startswith; ja3s.hash; content:"%s"; sid:1006;)
alert tls any any -> any any (msg:"sni once"; tls.sni; content:"shop.example"; sid:1007;)
alert tls any any -> any any (msg:"in two certificates of the chain, once"; flow:to_client; tls.certs; content:"Bulkhead Test Root K"; sid:1009;)
alert tls any any -> any any (msg:"server version once"; flow:to_client; tls.version:1.2; sid:1008;)
alert tls $EXTERNAL_NET any -> $HOME_NET any (msg:"ET POLICY Request for Jsecoin Browser Miner M2"; flow:established,from_server; tls.cert_serial; content:"00:E7:F9:B6:DE:A6:57:93:E2:44:6A:3B:95:C6:B3:EC:DF"; classtype:policy-violation; sid:2024788; rev:3;)
`, ja3s, ja3s)
	want := map[uint32]int{1001: 1, 1002: 1, 1004: 1, 1005: 1, 1006: 1, 1007: 1, 1008: 1, 1009: 1, 2024788: 1}
	for _, mss := range []int{1460, 5} {
		got := alertsBySID(t, tlsRules, tcpPackets(t, conv, 443, mss))
		if !mapsEqual(got, want) {
			t.Errorf("TLS, segments of %d: alerts by sid %v, want %v", mss, got, want)
		}
	}

	httpConv := []applayer.Segment{
		{Dir: stream.ToServer, Data: []byte("GET /a HTTP/1.1\r\nHost: shop\r\nAccept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US\r\n\r\n")},
		{Dir: stream.ToClient, Data: []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")},
		{Dir: stream.ToServer, Data: []byte("GET / HTTP/1.1\r\nHost: shop\r\nAccept-Encoding: AAAAAAAAAAAAAAAAAAAAAAAA, ,\r\n\r\n")},
		{Dir: stream.ToClient, Data: []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")},
	}
	httpRules := `alert http any any -> any any (msg:"accept_enc"; flow:established,to_server; http.accept_enc; content:"deflate, br"; endswith; sid:2001;)
alert http any any -> any any (msg:"accept_lang"; http.accept_lang; content:"en-US"; bsize:5; sid:2002;)
alert http any any -> any any (msg:"accept_lang absent value"; http.accept_lang; content:"fr"; sid:2003;)
alert http any any -> [$HOME_NET,$HTTP_SERVERS] any (msg:"ET EXPLOIT Windows HTTP Protocol Stack UAF/RCE (CVE-2021-31166), http.sys DOS (CVE-2022-21907) Inbound"; flow:established,to_server; http.accept_enc; content:",|20|,"; fast_pattern; reference:cve,2021-31166; classtype:attempted-admin; sid:2032962; rev:1;)
`
	wantHTTP := map[uint32]int{2001: 1, 2002: 1, 2032962: 1}
	for _, mss := range []int{1460, 3} {
		got := alertsBySID(t, httpRules, tcpPackets(t, httpConv, 80, mss))
		if !mapsEqual(got, wantHTTP) {
			t.Errorf("HTTP, segments of %d: alerts by sid %v, want %v", mss, got, wantHTTP)
		}
	}
}

func mapsEqual(a, b map[uint32]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
