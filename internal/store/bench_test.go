package store

import (
	"context"
	"testing"

	"github.com/bulkhead/bulkhead/internal/policy"
)

// A 100k-rule set: 1000 sections of 100 rules, 1000 groups, 100k rule ids.
const benchPolicies, benchRulesPer = 1000, 100

func BenchmarkCommit100kRules(b *testing.B) {
	ctx := context.Background()
	s := openTest(b)
	set := testSet(benchPolicies, benchRulesPer)
	body, _, err := encodeSet(set)
	if err != nil {
		b.Fatal(err)
	}
	base := int64(0)
	b.ResetTimer()
	for b.Loop() {
		n, err := s.Commit(ctx, Commit{Base: base, Author: "bench", Summary: "100k rules", Set: set,
			Audit: []AuditEntry{{Actor: "bench", Action: "apply", Diff: "+100000 rules"}}})
		if err != nil {
			b.Fatal(err)
		}
		base = n
	}
	b.ReportMetric(float64(len(body)), "stored-bytes")
}

func BenchmarkLatest100kRules(b *testing.B) {
	ctx := context.Background()
	s := openTest(b)
	if _, err := s.Commit(ctx, Commit{Set: testSet(benchPolicies, benchRulesPer)}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		rev, err := s.Latest(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(rev.Set.RuleIDs) != benchPolicies*benchRulesPer {
			b.Fatalf("loaded %d rule ids", len(rev.Set.RuleIDs))
		}
	}
}

// BenchmarkEncodeSet100kRules is the part of a commit spent before the write
// lock is taken.
func BenchmarkEncodeSet100kRules(b *testing.B) {
	set := testSet(benchPolicies, benchRulesPer)
	for b.Loop() {
		if _, _, err := encodeSet(set); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommitWorkload is the cost of one small inventory change: a
// transaction and its fsync.
func BenchmarkCommitWorkload(b *testing.B) {
	ctx := context.Background()
	s := openTest(b)
	w := workload("web-1", "10.0.0.1")
	for b.Loop() {
		if _, err := s.Commit(ctx, Commit{UpsertWorkloads: []*policy.Workload{w},
			Audit: []AuditEntry{{Actor: "discovery", Action: "apply", Object: "Workload/web-1"}}}); err != nil {
			b.Fatal(err)
		}
	}
}
