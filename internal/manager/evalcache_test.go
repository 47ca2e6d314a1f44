package manager

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/bulkhead/bulkhead/internal/api"
)

// TestEvalFollowsInventory: the cached evaluator is recompiled when only
// the inventory changes (no new revision).
func TestEvalFollowsInventory(t *testing.T) {
	tm := startManager(t)
	ctx := context.Background()
	op := tm.client(t, api.RoleOperator)
	apply := func(objs ...string) {
		t.Helper()
		var docs []api.Document
		for _, o := range objs {
			docs = append(docs, api.Document{Object: json.RawMessage(o)})
		}
		if _, err := op.Apply(ctx, api.ApplyRequest{Documents: docs}); err != nil {
			t.Fatal(err)
		}
	}
	apply(`{"apiVersion":"bulkhead.io/v1","kind":"Group","metadata":{"name":"db"},"spec":{"match":"tier == \"db\""}}`,
		`{"apiVersion":"bulkhead.io/v1","kind":"Policy","metadata":{"name":"p"},"spec":{"category":"Application","rules":[{"name":"no-db","destinations":["db"],"action":"drop"}]}}`,
		`{"apiVersion":"bulkhead.io/v1","kind":"Workload","metadata":{"name":"w"},"spec":{"ips":["10.2.0.1"],"tags":{"tier":"web"}}}`)
	verdict := func() string {
		t.Helper()
		d, err := op.Eval(ctx, api.EvalRequest{From: "10.9.9.9", To: "10.2.0.1", Proto: "tcp", Port: 5432})
		if err != nil {
			t.Fatal(err)
		}
		return d.Verdict
	}
	if v := verdict(); v != "allow" {
		t.Fatalf("web workload: %s, want allow", v)
	}
	apply(`{"apiVersion":"bulkhead.io/v1","kind":"Workload","metadata":{"name":"w"},"spec":{"ips":["10.2.0.1"],"tags":{"tier":"db"}}}`)
	if v := verdict(); v != "drop" {
		t.Fatalf("after retagging the workload db: %s, want drop (stale evaluator)", v)
	}
}
