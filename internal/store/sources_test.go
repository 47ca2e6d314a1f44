package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/inventory"
	"github.com/bulkhead/bulkhead/internal/policy"
)

func TestInventoryRecordsAndSources(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	obs := time.Date(2026, 4, 1, 8, 0, 0, 0, time.UTC)
	rec := func(key, name, ip string) inventory.Record {
		return inventory.Record{Source: "vc1", Kind: inventory.KindVCenter, Key: key, Name: name, IPs: []string{ip},
			Tags: map[string]string{"app": "shop"}, Attrs: map[string]string{"folder": "/DC0/vm"}, Observed: obs}
	}
	src, err := s.CreateSource(ctx, Source{Name: "vc1", Kind: inventory.KindVCenter, URL: "https://vc/sdk", User: "u", Password: "secret", Insecure: true, Interval: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSource(ctx, src); !errors.Is(err, ErrConflict) {
		t.Errorf("second source of the same name: %v, want ErrConflict", err)
	}
	wl := &policy.Workload{Header: policy.Header{APIVersion: policy.APIVersion, Kind: policy.KindWorkload, Metadata: policy.Metadata{Name: "web-1"}},
		Spec: policy.WorkloadSpec{IPs: []string{"10.0.0.1"}}}
	v0, _ := s.InventoryVersion(ctx)
	if err := s.ApplyInventory(ctx, InventoryChange{Source: "vc1", Records: []inventory.Record{rec("u1", "web-1", "10.0.0.1"), rec("u2", "web-2", "10.0.0.2")},
		Commit: Commit{UpsertWorkloads: []*policy.Workload{wl}, Audit: []AuditEntry{{Actor: "t", Action: "sync", Object: "Source/vc1"}}}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.SourceRecords(ctx, "vc1")
	if err != nil || len(got) != 2 || !got[0].Equal(&[]inventory.Record{rec("u1", "web-1", "10.0.0.1")}[0]) || !got[0].Observed.Equal(obs) {
		t.Fatalf("records %+v, %v", got, err)
	}
	if v1, _ := s.InventoryVersion(ctx); v1 == v0 {
		t.Error("inventory version did not move")
	}
	if a, _ := s.AuditLog(ctx, AuditFilter{Object: "Source/vc1"}); len(a) != 1 {
		t.Errorf("audit %+v", a)
	}

	// A failing change writes nothing: records and workloads go together.
	err = s.ApplyInventory(ctx, InventoryChange{Source: "vc1", Replace: true, Records: []inventory.Record{rec("u3", "web-3", "10.0.0.3")},
		Commit: Commit{DeleteWorkloads: []string{"no-such"}}})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete of an unknown workload: %v", err)
	}
	if got, _ := s.SourceRecords(ctx, ""); len(got) != 2 {
		t.Errorf("a failed change left records: %+v", got)
	}

	// Replace drops what the source no longer has.
	if err := s.ApplyInventory(ctx, InventoryChange{Source: "vc1", Replace: true, Records: []inventory.Record{rec("u3", "web-3", "10.0.0.3")}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.SourceRecords(ctx, "vc1"); len(got) != 1 || got[0].Key != "u3" {
		t.Errorf("after replace: %+v", got)
	}
	if err := s.ApplyInventory(ctx, InventoryChange{Source: "vc1", Records: []inventory.Record{rec("u4", "x", "10.0.0.4")}, Commit: Commit{Set: policy.NewSet()}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("inventory change with a policy set: %v", err)
	}
	bad := rec("u5", "x", "10.0.0.5")
	bad.Source = "other"
	if err := s.ApplyInventory(ctx, InventoryChange{Source: "vc1", Records: []inventory.Record{bad}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("record of another source: %v", err)
	}

	at := time.Date(2026, 4, 2, 0, 0, 0, 0, time.UTC)
	if err := s.RecordSync(ctx, "vc1", at, "connection refused"); err != nil {
		t.Fatal(err)
	}
	got1, err := s.Source(ctx, "vc1")
	if err != nil || !got1.LastSync.Equal(at) || got1.LastError != "connection refused" || got1.Password != "secret" || got1.Interval != 5*time.Minute || !got1.Insecure {
		t.Errorf("source %+v, %v", got1, err)
	}
	if err := s.ApplyInventory(ctx, InventoryChange{Source: "vc1", DeleteSource: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Source(ctx, "vc1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted source: %v", err)
	}
	if got, _ := s.SourceRecords(ctx, ""); len(got) != 0 {
		t.Errorf("records of a deleted source: %+v", got)
	}
	if err := s.RecordSync(ctx, "vc1", at, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("sync of a deleted source: %v", err)
	}
}
