package eval

import (
	"slices"
	"sort"

	"github.com/bulkhead/bulkhead/internal/ports"
)

// Read-only views of the compiled policy for the data-plane compiler
// (internal/span), which turns a revision into each host's kernel state and
// must follow the evaluator's reading of it exactly. Slices they return share
// the evaluator's memory: callers must not change them.

// RuleMatch is what one compiled rule matches.
type RuleMatch struct {
	// Sources and Destinations are group indexes (see GroupName), sorted;
	// empty means any. Inline literals have groups of their own.
	Sources, Destinations []int32
	// Services are the rule's port specs; empty means any unless NoService.
	Services []ports.Spec
	// NoService is set when the rule's services name only Services without
	// ports: the rule matches nothing.
	NoService bool
	// Profiles is the number of context profiles the rule requires; a flow
	// without L7 context never satisfies one.
	Profiles int
	// Section is the position of the rule's section in evaluation order,
	// for SectionAppliesTo.
	Section int
}

// NumRules returns the number of rules, the default rule not counted.
func (e *Evaluator) NumRules() int { return len(e.rules) }

// RuleAt returns the metadata and the match of the i-th rule in evaluation
// order (category, section priority, section name, rule order).
func (e *Evaluator) RuleAt(i int) (RuleInfo, RuleMatch) {
	r := &e.rules[i]
	return e.info[i], RuleMatch{
		Sources:      slices.Clip(e.srcOf(r)),
		Destinations: slices.Clip(e.dstOf(r)),
		Services:     slices.Clip(e.specs[r.svcOff : r.svcOff+uint32(r.svcN)]),
		NoService:    r.noService,
		Profiles:     int(r.profN),
		Section:      int(r.section),
	}
}

// DefaultRule returns the metadata of the default rule (id 1).
func (e *Evaluator) DefaultRule() RuleInfo { return e.dflt }

// Workloads returns the names of the workloads the evaluator knows,
// sorted; a name's position is its workload index.
func (e *Evaluator) Workloads() []string { return slices.Clip(e.workloads) }

// WorkloadIndex returns the index of a workload by name.
func (e *Evaluator) WorkloadIndex(name string) (int, bool) {
	i := sort.SearchStrings(e.workloads, name)
	return i, i < len(e.workloads) && e.workloads[i] == name
}

// SectionAppliesTo reports whether the section at position section in
// evaluation order applies to the workload of index wl: its appliedTo is
// empty or names a group one of the workload's addresses is in.
func (e *Evaluator) SectionAppliesTo(section, wl int) bool {
	return e.appliesTo(int32(section), int32(wl))
}

// NumIdentities returns the number of identities, WorldIdentity included;
// identities are numbered from 0.
func (e *Evaluator) NumIdentities() int { return len(e.identWL) }

// IdentityGroups returns the groups (indexes, sorted, nesting parents
// included) of an identity; none for WorldIdentity or an unknown id.
func (e *Evaluator) IdentityGroups(id uint32) []int32 {
	if int(id) >= len(e.identWL) {
		return nil
	}
	return slices.Clip(e.groupsOf(id))
}

// NumGroups returns the number of groups, inline literals included.
func (e *Evaluator) NumGroups() int { return len(e.groupNames) }

// GroupName returns the name of a group by index; an inline literal is
// named by its canonical prefix ("10.0.0.0/8").
func (e *Evaluator) GroupName(g int32) string { return e.groupNames[g] }
