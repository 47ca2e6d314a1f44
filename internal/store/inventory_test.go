package store

import (
	"context"
	"testing"

	"github.com/bulkhead/bulkhead/internal/policy"
)

// TestInventoryVersion: the version moves with every inventory change and
// only then, so caches keyed on it are never stale.
func TestInventoryVersion(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	version := func() int64 {
		t.Helper()
		v, err := s.InventoryVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := version(); v != 0 {
		t.Fatalf("new store: version %d, want 0", v)
	}
	wl := &policy.Workload{Header: policy.Header{APIVersion: policy.APIVersion, Kind: policy.KindWorkload, Metadata: policy.Metadata{Name: "web-1"}},
		Spec: policy.WorkloadSpec{IPs: []string{"10.0.0.1"}}}
	if _, err := s.Commit(ctx, Commit{Author: "t", UpsertWorkloads: []*policy.Workload{wl}}); err != nil {
		t.Fatal(err)
	}
	if v := version(); v != 1 {
		t.Fatalf("after an upsert: version %d, want 1", v)
	}
	if _, err := s.Commit(ctx, Commit{Base: 0, Author: "t", Set: policy.NewSet()}); err != nil {
		t.Fatal(err)
	}
	if v := version(); v != 1 {
		t.Fatalf("after a policy-only commit: version %d, want 1", v)
	}
	if _, err := s.Commit(ctx, Commit{Author: "t", DeleteWorkloads: []string{"web-1"}}); err != nil {
		t.Fatal(err)
	}
	if v := version(); v != 2 {
		t.Fatalf("after a delete: version %d, want 2", v)
	}
	if _, err := s.Commit(ctx, Commit{Author: "t", DeleteWorkloads: []string{"web-1"}}); err == nil {
		t.Fatal("deleting a missing workload succeeded")
	}
	if v := version(); v != 2 {
		t.Fatalf("after a failed commit: version %d, want 2", v)
	}
}
