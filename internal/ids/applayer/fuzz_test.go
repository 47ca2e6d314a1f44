package applayer

import (
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/bulkhead/bulkhead/internal/ids/stream"
)

// encodeConv packs a conversation for FuzzStream: per message a 2-byte
// header (direction in the top bit, length below) and the bytes.
func encodeConv(msgs []msg) []byte {
	var out []byte
	for _, m := range msgs {
		n := min(len(m.data), 0x7fff)
		out = binary.BigEndian.AppendUint16(out, uint16(n)|uint16(m.dir)<<15)
		out = append(out, m.data[:n]...)
	}
	return out
}

func decodeConv(b []byte) []msg {
	var out []msg
	for len(b) >= 2 {
		h := binary.BigEndian.Uint16(b)
		n := min(int(h&0x7fff), len(b)-2)
		out = append(out, msg{stream.Dir(h >> 15), string(b[2 : 2+n])})
		b = b[2+n:]
	}
	return out
}

// FuzzStream feeds arbitrary conversations: nothing panics, and the same
// messages delivered in one piece each or cut into random pieces give the
// same transactions — the property that makes splitting a payload into
// small segments useless against the application layer.
func FuzzStream(f *testing.F) {
	f.Add(uint64(1), encodeConv([]msg{{stream.ToServer, reqGet + reqPost + reqChunk}, {stream.ToClient, resp1 + resp2 + resp3}}))
	f.Add(uint64(2), encodeConv([]msg{{stream.ToClient, "SSH-2.0-OpenSSH_9.2p1\r\n"}, {stream.ToServer, "SSH-2.0-Go\r\n"}}))
	f.Add(uint64(3), encodeConv([]msg{{stream.ToServer, "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n"}}))
	f.Add(uint64(4), encodeConv([]msg{{stream.ToServer, "\x00\x1d\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04evil\x07example\x00\x00\x01\x00\x01"}}))
	f.Add(uint64(5), encodeConv([]msg{{stream.ToServer, "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /x HTTP/1.0\r\n\r\n"}, {stream.ToClient, "HTTP/1.1 200 OK\r\n\r\nbody"}}))
	f.Add(uint64(6), encodeConv(tlsHandshake(f, 0x0303)))
	f.Add(uint64(7), encodeConv(tlsHandshake(f, 0x0304)))
	cert, _, _ := chainCert(f)
	chain, _ := tlsConversation(f, 0x0303, cert)
	f.Add(uint64(8), encodeConv(chain))
	hello := tlsHandshake(f, 0x0303)[0]
	f.Add(uint64(9), encodeConv([]msg{hello, {stream.ToClient, serverHello(0x0303, 0xc02f, [][2]any{{uint16(0x2a2a), ""}, {uint16(16), "\x00\x03\x02h2"}}, true)}}))
	f.Add(uint64(10), encodeConv([]msg{{stream.ToServer, "GET / HTTP/1.1\r\nAccept-Encoding: gzip, ,\r\nAccept-Language: en\r\n\r\n"}}))
	f.Fuzz(func(t *testing.T, seed uint64, data []byte) {
		conv := decodeConv(data)
		whole := run(conv, nil)
		r := rand.New(rand.NewPCG(seed, seed))
		pieces := run(conv, r)
		if !reflect.DeepEqual(whole, pieces) {
			t.Fatalf("one piece:\n%v\nrandom pieces:\n%v", whole, pieces)
		}
	})
}

// run feeds conv, each message whole (r nil) or cut at random.
func run(conv []msg, r *rand.Rand) []rec {
	var c Conn
	c.Init(6, 1, 2)
	out := &recorder{}
	for _, m := range conv {
		d := []byte(m.data)
		for len(d) > 0 {
			n := len(d)
			if r != nil {
				n = 1 + r.IntN(len(d))
			}
			c.Stream(m.dir, d[:n], out.emit)
			d = d[n:]
		}
	}
	c.Close(out.emit)
	return out.txs
}

// FuzzDatagram: arbitrary UDP payloads never panic and stay bounded.
func FuzzDatagram(f *testing.F) {
	f.Add([]byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04evil\x07example\x00\x00\x01\x00\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Conn
		c.Init(17, 1, 53)
		n := 0
		for range 3 {
			c.Datagram(stream.ToServer, data, func(tx *Tx) {
				n++
				if len(tx.Buf[0]) > 0 || (tx.DNS != nil && len(tx.DNS.RRName) > maxDNSName) {
					t.Fatalf("bad tx %+v", tx)
				}
			})
		}
		if n > 3*maxQuestions {
			t.Fatalf("%d transactions", n)
		}
	})
}
