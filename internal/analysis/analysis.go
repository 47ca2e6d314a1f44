// Package analysis turns stored flow records into what an operator reads: the
// application map (nodes and edges at env, app, tier or workload level), the
// compliance class of every flow against a policy revision, and the what-if
// replay of history against a draft or another revision. It is pure: flow
// records and a compiled evaluator in, results out; no SQL, no HTTP.
package analysis

import (
	"fmt"

	"github.com/bulkhead/bulkhead/internal/policy"
)

// Level is a layer of the hierarchy env -> app -> tier -> workload.
type Level uint8

const (
	LevelEnv Level = iota + 1
	LevelApp
	LevelTier
	LevelWorkload
)

var levelNames = [...]string{LevelEnv: "env", LevelApp: "app", LevelTier: "tier", LevelWorkload: "workload"}

func (l Level) String() string {
	if l >= LevelEnv && l <= LevelWorkload {
		return levelNames[l]
	}
	return fmt.Sprintf("level(%d)", uint8(l))
}

// ParseLevel is the inverse of Level.String; "" is LevelApp.
func ParseLevel(s string) (Level, error) {
	if s == "" {
		return LevelApp, nil
	}
	for l := LevelEnv; l <= LevelWorkload; l++ {
		if s == levelNames[l] {
			return l, nil
		}
	}
	return 0, fmt.Errorf("level %q: want env, app, tier or workload", s)
}

// Class is the compliance of one flow against a policy.
//
// Precedence, first that holds:
//
//   - Red: the record is a drop record (the data plane blocked it), or the
//     policy drops or rejects the flow now.
//   - Dashed: the policy allows the flow, but would drop or reject it if its
//     staged rules were enforced.
//   - Amber: allowed with no enforcement point (neither end is a workload:
//     rule 0), or allowed at every point by the default rule only.
//   - Green: allowed, and at least one point's decision is a specific
//     (non-default) enforced rule.
//
// So a flow allowed by the default rule that a staged rule would drop is
// Dashed, and a dropped flow that a staged rule would allow stays Red.
type Class uint8

const (
	Green Class = iota
	Amber
	Red
	Dashed
	numClasses
)

var classNames = [...]string{Green: "green", Amber: "amber", Red: "red", Dashed: "dashed"}

func (c Class) String() string {
	if c < numClasses {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// Counts are flow records per compliance class.
type Counts struct {
	Green, Amber, Red, Dashed uint64
}

// Total is the number of records counted.
func (c Counts) Total() uint64 { return c.Green + c.Amber + c.Red + c.Dashed }

func countsOf(a *[numClasses]uint64) Counts {
	return Counts{Green: a[Green], Amber: a[Amber], Red: a[Red], Dashed: a[Dashed]}
}

// Outcome is one policy's decision on a flow, as the what-if reports it.
type Outcome struct {
	Verdict policy.Action
	RuleID  uint32
	Rule    string // "policy/rule", "default", or "" for rule 0
}

// Blocks reports whether the verdict drops or rejects.
func (o Outcome) Blocks() bool { return blocks(o.Verdict) }

func blocks(a policy.Action) bool { return a == policy.ActionDrop || a == policy.ActionReject }
