package applayer

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/ids/stream"
)

// TestSegmentationEvasion runs an exploit request through TCP reassembly
// and the application layer: cut into 1-byte segments, shuffled, with
// duplicates, it yields the same transaction as when sent in one segment.
func TestSegmentationEvasion(t *testing.T) {
	const exploit = "GET /cgi-bin/%2e%2e/%2e%2e/%2e%2e/bin/sh HTTP/1.1\r\n" +
		"Host: victim.example\r\n" +
		"User-Agent: () { :; }; echo; /bin/id\r\n\r\n"
	whole, _ := feed([]msg{{stream.ToServer, exploit}}, 0)
	if len(whole.txs) != 1 || whole.txs[0].Buf[rules.BufHTTPURI] != "/bin/sh" {
		t.Fatalf("reference: %v", whole.txs)
	}
	for trial := range 20 {
		r := rand.New(rand.NewPCG(uint64(trial), 7))
		isn := r.Uint32()
		type seg struct {
			seq uint32
			b   []byte
		}
		var segs []seg
		for i := range len(exploit) {
			segs = append(segs, seg{isn + 1 + uint32(i), []byte(exploit[i : i+1])})
			if r.IntN(4) == 0 {
				j := min(len(exploit), i+1+r.IntN(5))
				segs = append(segs, seg{isn + 1 + uint32(i), []byte(exploit[i:j])})
			}
		}
		r.Shuffle(len(segs), func(i, j int) { segs[i], segs[j] = segs[j], segs[i] })

		var tcp stream.Conn
		var app Conn
		app.Init(6, 51000, 80)
		got := &recorder{}
		deliver := func(dir stream.Dir, _ uint64, b []byte) { app.Stream(dir, b, got.emit) }
		tcp.Segment(stream.ToServer, isn, stream.FlagSYN, nil, deliver)
		for _, s := range segs {
			if an := tcp.Segment(stream.ToServer, s.seq, stream.FlagACK, s.b, deliver); an != 0 {
				t.Fatalf("trial %d: anomaly %v", trial, an)
			}
		}
		app.Close(got.emit)
		if !reflect.DeepEqual(got.txs, whole.txs) {
			t.Fatalf("trial %d:\n got %v\nwant %v", trial, got.txs, whole.txs)
		}
	}
}
