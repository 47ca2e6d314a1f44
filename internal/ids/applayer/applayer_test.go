package applayer

import (
	"fmt"
	"maps"

	"reflect"
	"strings"
	"testing"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/ids/stream"
)

// rec is a Tx copied out of its emit call.
type rec struct {
	Proto      rules.Proto
	Dir        stream.Dir
	ID         uint64
	TLSVersion uint16
	Continues  bool
	Buf        map[rules.Buffer]string
	HTTP       *HTTPInfo
	TLS        *TLSInfo
	DNS        *DNSInfo
	SSH        *SSHInfo
}

func (r rec) String() string {
	return fmt.Sprintf("%d %v id=%d v=%#x %q http=%+v", r.Proto, r.Dir, r.ID, r.TLSVersion, r.Buf, r.HTTP)
}

type recorder struct{ txs []rec }

func (r *recorder) emit(tx *Tx) {
	out := rec{Proto: tx.Proto, Dir: tx.Dir, ID: tx.ID, TLSVersion: tx.TLSVersion, Continues: tx.Continues, Buf: map[rules.Buffer]string{}}
	for i, b := range tx.Buf {
		if b != nil {
			out.Buf[rules.Buffer(i)] = string(b)
		}
	}
	if tx.HTTP != nil {
		h := *tx.HTTP
		out.HTTP = &h
	}
	if tx.TLS != nil {
		t := *tx.TLS
		if t.JA3 != nil {
			j := *t.JA3
			t.JA3 = &j
		}
		if t.JA3S != nil {
			j := *t.JA3S
			t.JA3S = &j
		}
		out.TLS = &t
	}
	if tx.DNS != nil {
		d := *tx.DNS
		out.DNS = &d
	}
	if tx.SSH != nil {
		s := SSHInfo{}
		if tx.SSH.Client != nil {
			p := *tx.SSH.Client
			s.Client = &p
		}
		if tx.SSH.Server != nil {
			p := *tx.SSH.Server
			s.Server = &p
		}
		out.SSH = &s
	}
	r.txs = append(r.txs, out)
}

// msg is one direction's bytes in a conversation.
type msg struct {
	dir  stream.Dir
	data string
}

// feed runs a TCP conversation through a Conn; chunk > 0 cuts every
// message into pieces of at most chunk bytes.
func feed(msgs []msg, chunk int) (*recorder, rules.Proto) {
	var c Conn
	c.Init(6, 40000, 80)
	r := &recorder{}
	for _, m := range msgs {
		d := []byte(m.data)
		for len(d) > 0 {
			n := len(d)
			if chunk > 0 {
				n = min(n, chunk)
			}
			c.Stream(m.dir, d[:n], r.emit)
			d = d[n:]
		}
	}
	p := c.Proto()
	c.Close(r.emit)
	return r, p
}

const (
	reqGet = "GET /shop/./cart/../item%2Fx?id=1%20OR%201=1 HTTP/1.1\r\n" +
		"Host: Shop.Example:8080\r\n" +
		"User-Agent: curl/8.5.0\r\n" +
		"Accept: */*\r\n" +
		"Cookie: s=1\r\n" +
		"X-Folded: a\r\n b\r\n" +
		"\r\n"
	reqPost  = "POST /login HTTP/1.1\r\nHost: shop\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\r\nuser=admin&"
	reqChunk = "POST /upload HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n"
	resp1 = "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello"
	resp2 = "HTTP/1.1 302 Found\r\nLocation: /home\r\nSet-Cookie: sid=2\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
	resp3 = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close"
)

func TestHTTP(t *testing.T) {
	conv := []msg{
		{stream.ToServer, reqGet + reqPost + "\r\n" + reqChunk},
		{stream.ToClient, resp1 + resp2 + resp3},
	}
	r, p := feed(conv, 0)
	if p != rules.ProtoHTTP {
		t.Fatalf("proto %d", p)
	}
	if len(r.txs) != 6 {
		t.Fatalf("%d transactions: %v", len(r.txs), r.txs)
	}
	get := r.txs[0]
	wantGet := map[rules.Buffer]string{
		rules.BufHTTPMethod:      "GET",
		rules.BufHTTPURIRaw:      "/shop/./cart/../item%2Fx?id=1%20OR%201=1",
		rules.BufHTTPURI:         "/shop/item/x?id=1 OR 1=1",
		rules.BufHTTPProtocol:    "HTTP/1.1",
		rules.BufHTTPRequestLine: "GET /shop/./cart/../item%2Fx?id=1%20OR%201=1 HTTP/1.1",
		rules.BufHTTPHost:        "shop.example",
		rules.BufHTTPHostRaw:     "Shop.Example:8080",
		rules.BufHTTPUserAgent:   "curl/8.5.0",
		rules.BufHTTPAccept:      "*/*",
		rules.BufHTTPCookie:      "s=1",
		rules.BufHTTPHeader:      "Host: Shop.Example:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nX-Folded: a b\r\n\r\n",
		rules.BufHTTPHeaderRaw:   reqGet[strings.Index(reqGet, "\r\n")+2:],
		rules.BufHTTPHeaderNames: "\r\nHost\r\nUser-Agent\r\nAccept\r\nCookie\r\nX-Folded\r\n\r\n",
		rules.BufHTTPStart:       reqGet,
	}
	if !maps.Equal(get.Buf, wantGet) {
		t.Errorf("GET buffers:\n got %q\nwant %q", get.Buf, wantGet)
	}
	if get.Dir != stream.ToServer || get.ID != 0 || *get.HTTP != (HTTPInfo{Hostname: "shop.example", URL: "/shop/./cart/../item%2Fx?id=1%20OR%201=1", UserAgent: "curl/8.5.0", Method: "GET", Protocol: "HTTP/1.1"}) {
		t.Errorf("GET tx %v", get)
	}
	post := r.txs[1]
	if post.Buf[rules.BufHTTPRequestBody] != "user=admin&" || post.Buf[rules.BufHTTPContentType] != "application/x-www-form-urlencoded" || post.Buf[rules.BufHTTPContentLen] != "11" || post.ID != 1 {
		t.Errorf("POST tx %v", post)
	}
	chunked := r.txs[2]
	if chunked.Buf[rules.BufHTTPRequestBody] != "hello world" || chunked.Buf[rules.BufHTTPURI] != "/upload" {
		t.Errorf("chunked tx %v", chunked)
	}
	r1 := r.txs[3]
	if r1.Dir != stream.ToClient || r1.ID != 0 || r1.Buf[rules.BufHTTPStatCode] != "200" || r1.Buf[rules.BufHTTPStatMsg] != "OK" ||
		r1.Buf[rules.BufHTTPResponseBody] != "hello" || r1.Buf[rules.BufHTTPServer] != "nginx" ||
		r1.Buf[rules.BufHTTPURI] != "/shop/item/x?id=1 OR 1=1" || r1.Buf[rules.BufHTTPMethod] != "GET" ||
		r1.Buf[rules.BufHTTPResponseLine] != "HTTP/1.1 200 OK" || r1.Buf[rules.BufHTTPContentType] != "text/html" {
		t.Errorf("response 1 %v", r1)
	}
	if r1.HTTP.Status != 200 || r1.HTTP.URL != get.HTTP.URL || r1.HTTP.Length != 5 || r1.HTTP.ContentType != "text/html" || r1.HTTP.Hostname != "shop.example" {
		t.Errorf("response 1 EVE %+v", r1.HTTP)
	}
	r2 := r.txs[4]
	if r2.ID != 1 || r2.Buf[rules.BufHTTPLocation] != "/home" || r2.Buf[rules.BufHTTPCookie] != "sid=2" || r2.Buf[rules.BufHTTPResponseBody] != "abc" || r2.HTTP.URL != "/login" {
		t.Errorf("response 2 %v", r2)
	}
	if strings.Contains(r2.Buf[rules.BufHTTPHeader], "Set-Cookie") {
		t.Errorf("set-cookie in http.header: %q", r2.Buf[rules.BufHTTPHeader])
	}
	r3 := r.txs[5]
	if r3.ID != 2 || r3.Buf[rules.BufHTTPResponseBody] != "until close" || r3.HTTP.Status != 200 || r3.HTTP.URL != "/upload" || r3.Buf[rules.BufHTTPProtocol] != "HTTP/1.0" {
		t.Errorf("response 3 (read until close) %v", r3)
	}
}

// TestHTTPSegmentation: the same conversation cut into pieces of any size
// gives the same transactions.
func TestHTTPSegmentation(t *testing.T) {
	conv := []msg{
		{stream.ToServer, reqGet + reqPost + reqChunk},
		{stream.ToClient, resp1 + resp2 + resp3},
	}
	whole, _ := feed(conv, 0)
	for _, chunk := range []int{1, 2, 3, 7, 64} {
		got, _ := feed(conv, chunk)
		if !reflect.DeepEqual(got.txs, whole.txs) {
			t.Fatalf("chunks of %d:\n got %v\nwant %v", chunk, got.txs, whole.txs)
		}
	}
}

func TestURINormalization(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/", "/"},
		{"/a/b/../c", "/a/c"},
		{"/a/./b/.", "/a/b/"},
		{"/../../etc/passwd", "/etc/passwd"},
		{"/cgi-bin/%2e%2e/%2e%2e/bin/sh", "/bin/sh"},
		{"//double//slash", "//double//slash"},
		{"/a/..", "/"},
		{"/%41%zz%4", "/A%zz%4"},
		{"http://Host:80/p/../q?x=%3C", "/q?x=<"},
		{"http://host", "/"},
		{"*", "*"},
		{"/p?a=/../b", "/p?a=/../b"},
	}
	for _, tt := range tests {
		got, _ := appendURI(nil, nil, []byte(tt.in))
		if string(got) != tt.want {
			t.Errorf("%q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHTTPHeadAndBodyCaps(t *testing.T) {
	body := strings.Repeat("A", maxBody+1000)
	req := fmt.Sprintf("POST /big HTTP/1.1\r\nContent-Length: %d\r\n\r\n%sGET /next HTTP/1.1\r\n\r\n", len(body), body)
	r, _ := feed([]msg{{stream.ToServer, req}}, 1400)
	if len(r.txs) != 2 {
		t.Fatalf("%d transactions", len(r.txs))
	}
	if n := len(r.txs[0].Buf[rules.BufHTTPRequestBody]); n != maxBody {
		t.Errorf("body kept %d bytes, want %d", n, maxBody)
	}
	if r.txs[1].Buf[rules.BufHTTPURI] != "/next" {
		t.Errorf("request after the big body: %v", r.txs[1])
	}

	huge := "GET /h HTTP/1.1\r\nX: " + strings.Repeat("b", maxHead) + "\r\n\r\nGET /after HTTP/1.1\r\n\r\n"
	r, _ = feed([]msg{{stream.ToServer, huge}}, 1000)
	if len(r.txs) != 1 || r.txs[0].Buf[rules.BufHTTPURI] != "/h" {
		t.Fatalf("oversized head: %v", r.txs)
	}
}

func TestHTTPHeadResponseAndUpgrade(t *testing.T) {
	r, _ := feed([]msg{
		{stream.ToServer, "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\nGET /y HTTP/1.1\r\nHost: a\r\n\r\n"},
		{stream.ToClient, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"},
	}, 0)
	if len(r.txs) != 4 || r.txs[2].HTTP.URL != "/x" || r.txs[3].HTTP.URL != "/y" || r.txs[3].HTTP.Status != 204 {
		t.Fatalf("HEAD pairing: %v", r.txs)
	}
	r, _ = feed([]msg{
		{stream.ToServer, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"},
		{stream.ToClient, "HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x05hello"},
		{stream.ToServer, "\x81\x85garbage"},
	}, 0)
	if len(r.txs) != 2 || r.txs[1].HTTP.Status != 101 {
		t.Fatalf("upgrade: %v", r.txs)
	}
}

func TestIdentifyRegardlessOfPort(t *testing.T) {
	tests := []struct {
		name string
		conv []msg
		want rules.Proto
	}{
		{"http", []msg{{stream.ToServer, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"}}, rules.ProtoHTTP},
		{"http with extra blanks", []msg{{stream.ToServer, "GET  /a \t HTTP/1.1\r\nHost: a\r\n\r\n"}}, rules.ProtoHTTP},
		{"http with an unlisted method", []msg{{stream.ToServer, "PROPFIND /dav HTTP/1.1\r\n\r\n"}}, rules.ProtoHTTP},
		{"http/0.9 is not taken", []msg{{stream.ToServer, "GET /\r\n\r\n"}}, 0},
		{"ssh", []msg{{stream.ToClient, "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"}, {stream.ToServer, "SSH-2.0-Go\r\n"}}, rules.ProtoSSH},
		{"smtp", []msg{{stream.ToClient, "220 mail.example ESMTP Postfix\r\n"}, {stream.ToServer, "EHLO x\r\n"}}, rules.ProtoSMTP},
		{"unknown", []msg{{stream.ToServer, "\x00\x01\x02binary"}, {stream.ToClient, "\x09\x08whatever"}}, 0},
	}
	for _, tt := range tests {
		for _, chunk := range []int{0, 1} {
			if _, p := feed(tt.conv, chunk); p != tt.want {
				t.Errorf("%s (chunk %d): proto %d, want %d", tt.name, chunk, p, tt.want)
			}
		}
	}
}

func TestSSH(t *testing.T) {
	r, _ := feed([]msg{
		{stream.ToClient, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n\x00\x00\x01\x14kex"},
		{stream.ToServer, "SSH-2.0-libssh_0.9.6\r\n\x00\x00garbage"},
	}, 0)
	if len(r.txs) != 2 {
		t.Fatalf("%v", r.txs)
	}
	srv, cli := r.txs[0], r.txs[1]
	if srv.Dir != stream.ToClient || srv.Buf[rules.BufSSHProto] != "2.0" || srv.Buf[rules.BufSSHSoftware] != "OpenSSH_9.2p1" {
		t.Errorf("server banner %v", srv)
	}
	if cli.Buf[rules.BufSSHSoftware] != "libssh_0.9.6" || cli.SSH.Client.SoftwareVersion != "libssh_0.9.6" || cli.SSH.Server.SoftwareVersion != "OpenSSH_9.2p1" || cli.SSH.Client.ProtoVersion != "2.0" {
		t.Errorf("client banner %v %+v", cli, cli.SSH)
	}
}

// TestHTTPAllocs: a keep-alive connection's requests allocate nothing
// once its buffers and caches are warm.
func TestHTTPAllocs(t *testing.T) {
	var c Conn
	c.Init(6, 1, 2)
	req := []byte(reqGet)
	n := 0
	emit := func(tx *Tx) { n += len(tx.Buf[rules.BufHTTPURI]) }
	c.Stream(stream.ToServer, req, emit)
	allocs := testing.AllocsPerRun(100, func() { c.Stream(stream.ToServer, req, emit) })
	if allocs != 0 {
		t.Fatalf("%v allocations per request", allocs)
	}
}

// TestHTTPPipelineOverflow: beyond maxQueued unanswered requests, the
// responses that cannot be paired stay unpaired rather than mispaired.
func TestHTTPPipelineOverflow(t *testing.T) {
	var reqs, resps strings.Builder
	const n = maxQueued + 2
	for i := range n {
		fmt.Fprintf(&reqs, "GET /r%d HTTP/1.1\r\nHost: a\r\n\r\n", i)
		fmt.Fprintf(&resps, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d", i)
	}
	r, _ := feed([]msg{{stream.ToServer, reqs.String()}, {stream.ToClient, resps.String()}, {stream.ToServer, "GET /late HTTP/1.1\r\n\r\n"}, {stream.ToClient, "HTTP/1.1 404 Not Found\r\n\r\n"}}, 0)
	if len(r.txs) != 2*n+2 {
		t.Fatalf("%d transactions", len(r.txs))
	}
	for i, tx := range r.txs[n : 2*n] {
		want := fmt.Sprintf("/r%d", i)
		if i >= maxQueued {
			want = ""
		}
		if tx.HTTP.URL != want || tx.Buf[rules.BufHTTPResponseBody] != fmt.Sprint(i) {
			t.Errorf("response %d: url %q body %q, want url %q", i, tx.HTTP.URL, tx.Buf[rules.BufHTTPResponseBody], want)
		}
	}
	if last := r.txs[2*n+1]; last.HTTP.URL != "/late" || last.HTTP.Status != 404 {
		t.Errorf("after the backlog: %v", last)
	}
}
