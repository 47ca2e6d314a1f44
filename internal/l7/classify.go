package l7

import (
	"sync"

	"github.com/bulkhead/bulkhead/internal/dpi"
	"github.com/bulkhead/bulkhead/internal/nft"
)

// DPI classifies with internal/dpi: the application and the negotiated TLS
// version, named as a ContextProfile names them.
func DPI(proto uint8) Classifier {
	c := dpiPool.Get().(*dpiClassifier)
	c.f.Reset(proto)
	return c
}

// A dpi.Flow holds a 16 KiB reassembly buffer: reused, not reallocated per
// connection.
var dpiPool = sync.Pool{New: func() any { return new(dpiClassifier) }}

type dpiClassifier struct{ f dpi.Flow }

// Release returns the classifier to the pool; the reader calls it once the
// connection is decided or forgotten.
func (c *dpiClassifier) Release() { dpiPool.Put(c) }

func (c *dpiClassifier) Feed(fromClient bool, payload []byte) (nft.L7Context, bool) {
	dir := dpi.Server
	if fromClient {
		dir = dpi.Client
	}
	r, done := c.f.Feed(dir, payload)
	return contextOf(r), done
}

func (c *dpiClassifier) Finish() nft.L7Context { return contextOf(c.f.Finish()) }

// ServerName is the TLS SNI, HTTP Host or DNS question seen so far.
func (c *dpiClassifier) ServerName() string { return string(c.f.Result().Host()) }

func contextOf(r *dpi.Result) nft.L7Context {
	if r.App == dpi.AppUnknown {
		return nft.L7Context{}
	}
	return nft.L7Context{App: r.App.String(), TLSVersion: r.TLSVersionName()}
}
