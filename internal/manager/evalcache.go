package manager

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/bulkhead/bulkhead/internal/eval"
	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/span"
	"github.com/bulkhead/bulkhead/internal/store"
)

// evalCache keeps the compiled evaluator of recently asked revisions, keyed
// by revision, by the store's inventory version and by the directory's
// version (directoryGroups resolve through it), so repeated evaluations do
// not recompile.
type evalCache struct {
	st    store.Store
	ident *identity // the directory and login sessions (identity.go)
	mu    sync.Mutex
	// entries is small: the latest revision and a few historical ones.
	entries []*evalEntry
}

type evalEntry struct {
	rev  int64
	inv  int64 // store.InventoryVersion the entry was compiled with
	dir  int64 // identity version of the directory it was compiled with
	eval *eval.Evaluator
	set  *policy.Set // the revision's policy with the inventory it was compiled with
	// span is built on first use: only the agent channel needs it; with
	// the sessions of version sess (user rules are keyed by their ports).
	span *span.Compiler
	sess int64
}

const evalCacheSize = 4

func newEvalCache(st store.Store) *evalCache { return &evalCache{st: st, ident: newIdentity(st)} }

// get returns the evaluator for revision n (0 = latest) over the current
// inventory, and the revision number it is for.
func (c *evalCache) get(ctx context.Context, n int64) (*eval.Evaluator, int64, error) {
	e, err := c.entry(ctx, n)
	if err != nil {
		return nil, 0, err
	}
	return e.eval, e.rev, nil
}

// spanCompiler returns the host span compiler of revision n (0 = latest).
func (c *evalCache) spanCompiler(ctx context.Context, n int64) (*span.Compiler, int64, error) {
	e, err := c.entry(ctx, n)
	if err != nil {
		return nil, 0, err
	}
	sessions, sessVersion, err := c.ident.portSessions(ctx, time.Now())
	if err != nil {
		return nil, 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.span == nil || e.sess != sessVersion {
		comp, err := span.NewCompiler(e.eval, e.set, span.WithSessions(sessions))
		if err != nil {
			return nil, 0, fmt.Errorf("span: revision %d: %w", e.rev, err)
		}
		e.span, e.sess = comp, sessVersion
	}
	return e.span, e.rev, nil
}

func (c *evalCache) entry(ctx context.Context, n int64) (*evalEntry, error) {
	if n == 0 {
		// Loading a large revision costs far more than listing the newest
		// number, so look the number up and try the cache first.
		revs, err := c.st.Revisions(ctx, 1)
		if err != nil {
			return nil, err
		}
		if len(revs) > 0 {
			n = revs[0].Number
		}
	}
	// The version is read before the workloads: a change between the two
	// reads leaves an entry newer than its key, never older, and the next
	// call sees the new version and recompiles.
	inv, err := c.st.InventoryVersion(ctx)
	if err != nil {
		return nil, err
	}
	dir, dirVersion, err := c.ident.directory(ctx, time.Now())
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		if e.rev == n && e.inv == inv && e.dir == dirVersion {
			return e, nil
		}
	}
	wls, err := c.st.Workloads(ctx)
	if err != nil {
		return nil, err
	}
	rev, err := c.st.Revision(ctx, n)
	if err != nil {
		return nil, err
	}
	set := rev.Set.Clone()
	for _, w := range wls {
		set.Workloads[w.Metadata.Name] = w
	}
	ev, err := eval.Compile(set, eval.WithDirectory(dir))
	if err != nil {
		return nil, fmt.Errorf("eval: compile revision %d: %w", rev.Number, err)
	}
	e := &evalEntry{rev: rev.Number, inv: inv, dir: dirVersion, eval: ev, set: set}
	c.entries = append([]*evalEntry{e}, c.entries...)
	if len(c.entries) > evalCacheSize {
		c.entries = c.entries[:evalCacheSize]
	}
	return e, nil
}
