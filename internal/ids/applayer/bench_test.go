package applayer

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/ids/stream"
)

// benchRequests is 100 pipelined browser-like requests (every tenth a
// POST with a 2 KiB form body) in 1460-byte segments. BenchmarkCopy is the
// baseline: the same segments copied once, as any reader of the stream
// would; the ratio Copy/HTTP ns per op is the cost of the parser relative
// to touching the bytes.
func benchRequests() [][]byte {
	var b bytes.Buffer
	form := bytes.Repeat([]byte("field=value&"), 170)
	for i := range 100 {
		if i%10 == 9 {
			fmt.Fprintf(&b, "POST /cart/add?item=%d HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\nCookie: session=abcdef0123456789; theme=dark\r\nConnection: keep-alive\r\n\r\n%s", i, len(form), form)
			continue
		}
		fmt.Fprintf(&b, "GET /static/img/product-%d.jpg?v=%d HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: image/avif,image/webp,*/*\r\nAccept-Language: en-US,en;q=0.5\r\nReferer: https://shop.example.com/catalog/page/%d\r\nCookie: session=abcdef0123456789; theme=dark\r\nConnection: keep-alive\r\n\r\n", i, i*7, i/10)
	}
	var segs [][]byte
	all := b.Bytes()
	for len(all) > 0 {
		n := min(1460, len(all))
		segs = append(segs, all[:n])
		all = all[n:]
	}
	return segs
}

func size(segs [][]byte) int64 {
	n := 0
	for _, s := range segs {
		n += len(s)
	}
	return int64(n)
}

func BenchmarkCopy(b *testing.B) {
	segs := benchRequests()
	dst := make([]byte, size(segs))
	b.SetBytes(size(segs))
	for b.Loop() {
		o := 0
		for _, s := range segs {
			o += copy(dst[o:], s)
		}
	}
}

func BenchmarkHTTP(b *testing.B) {
	segs := benchRequests()
	b.SetBytes(size(segs))
	b.ReportAllocs()
	var c Conn
	txs := 0
	emit := func(tx *Tx) { txs += len(tx.Buf[rules.BufHTTPURI]) & 1 }
	for b.Loop() {
		c.Init(6, 40000, 80)
		for _, s := range segs {
			c.Stream(stream.ToServer, s, emit)
		}
		c.Close(emit)
	}
}
