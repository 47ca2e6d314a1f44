package manager

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/store"
)

// evalCache keeps the compiled evaluator of recently asked revisions, keyed
// by revision and by a digest of the inventory, so repeated evaluations do
// not recompile.
type evalCache struct {
	st store.Store
	mu sync.Mutex
	// entries is small: the latest revision and a few historical ones.
	entries []evalEntry
}

type evalEntry struct {
	rev  int64
	inv  string
	eval *eval.Evaluator
}

const evalCacheSize = 4

func newEvalCache(st store.Store) *evalCache { return &evalCache{st: st} }

// get returns the evaluator for revision n (0 = latest) over the current
// inventory, and the revision number it is for.
func (c *evalCache) get(ctx context.Context, n int64) (*eval.Evaluator, int64, error) {
	if n == 0 {
		// Loading a large revision costs far more than listing the newest
		// number, so look the number up and try the cache first.
		revs, err := c.st.Revisions(ctx, 1)
		if err != nil {
			return nil, 0, err
		}
		if len(revs) > 0 {
			n = revs[0].Number
		}
	}
	wls, err := c.st.Workloads(ctx)
	if err != nil {
		return nil, 0, err
	}
	inv := inventoryDigest(wls)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		if e.rev == n && e.inv == inv {
			return e.eval, n, nil
		}
	}
	rev, err := c.st.Revision(ctx, n)
	if err != nil {
		return nil, 0, err
	}
	set := rev.Set.Clone()
	for _, w := range wls {
		set.Workloads[w.Metadata.Name] = w
	}
	ev, err := eval.Compile(set)
	if err != nil {
		return nil, 0, fmt.Errorf("eval: compile revision %d: %w", rev.Number, err)
	}
	c.entries = append([]evalEntry{{rev: rev.Number, inv: inv, eval: ev}}, c.entries...)
	if len(c.entries) > evalCacheSize {
		c.entries = c.entries[:evalCacheSize]
	}
	return ev, rev.Number, nil
}

// inventoryDigest fingerprints the inventory so a cached evaluator is used
// only with the workloads it was compiled for.
func inventoryDigest(wls []*policy.Workload) string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, w := range wls {
		enc.Encode(w)
	}
	return hex.EncodeToString(h.Sum(nil))
}
