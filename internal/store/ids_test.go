package store

import (
	"context"
	"errors"
	"testing"
)

func TestSignatureSets(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	s := openAt(t, path)
	text1 := []byte("alert tcp any any -> any 80 (msg:\"one\"; sid:1;)\n")
	text2 := append(append([]byte{}, text1...), "alert tcp any any -> any 80 (msg:\"two\"; sid:2;)\n"...)
	audit := func(action string) []AuditEntry {
		return []AuditEntry{{Actor: "alice", Action: action, Object: "SignatureSet/et"}}
	}
	a, err := s.PutSignatureSet(ctx, SignatureSet{Name: "et", Author: "alice", Rules: 1}, text1, audit("ids.import"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.PutSignatureSet(ctx, SignatureSet{Name: "et", Author: "alice", Rules: 2, Problems: 1}, text2, audit("ids.import"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutSignatureSet(ctx, SignatureSet{Name: "local", Author: "bob", Rules: 1}, text1, nil); err != nil {
		t.Fatal(err)
	}
	if a.Version != 1 || b.Version != 2 || a.SHA256 == b.SHA256 || len(b.SHA256) != 64 || b.Created.IsZero() {
		t.Fatalf("versions: %+v %+v", a, b)
	}
	sets, err := s.SignatureSets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sets) != 2 || sets[0].Name != "et" || sets[0].Version != 2 || sets[0].Rules != 2 || sets[0].Problems != 1 || sets[1].Name != "local" {
		t.Fatalf("sets: %+v", sets)
	}
	got, err := s.SignatureSetText(ctx, "et", 1)
	if err != nil || string(got) != string(text1) {
		t.Fatalf("text of et@1: %q, %v", got, err)
	}
	if _, err := s.SignatureSetText(ctx, "et", 9); !errors.Is(err, ErrNotFound) {
		t.Fatalf("et@9: %v", err)
	}
	if err := s.DeleteSignatureSet(ctx, "et", audit("ids.delete")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSignatureSet(ctx, "et", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	// Imported again after a delete, a set never reuses a version; and it
	// all survives a reopen.
	s.Close()
	s = openAt(t, path)
	c, err := s.PutSignatureSet(ctx, SignatureSet{Name: "et", Author: "alice", Rules: 1}, text1, nil)
	if err != nil || c.Version != 3 {
		t.Fatalf("after delete: %+v %v", c, err)
	}
	sets, _ = s.SignatureSets(ctx)
	if len(sets) != 2 || sets[0].Version != 3 {
		t.Fatalf("sets after re-import: %+v", sets)
	}
	log, err := s.AuditLog(ctx, AuditFilter{Object: "SignatureSet/et"})
	if err != nil || len(log) != 3 || log[0].Action != "ids.delete" {
		t.Fatalf("audit: %+v %v", log, err)
	}
	if _, err := s.PutSignatureSet(ctx, SignatureSet{}, text1, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no name: %v", err)
	}
}
