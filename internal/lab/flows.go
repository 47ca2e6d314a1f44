package lab

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"time"

	"github.com/bulkhead/bulkhead/internal/apiclient"
)

// Pair is a source and destination workload that talked.
type Pair struct{ Src, Dst string }

func (p Pair) String() string { return p.Src + " -> " + p.Dst }

// PairSet accumulates the workload pairs of flow records; a record seen
// again (an open connection's update) counts once.
type PairSet struct {
	// Pairs counts the records of each pair.
	Pairs   map[Pair]int
	Records int
	// Unnamed counts the records on which the manager gave a lab
	// workload's address without the workload's name; the pair takes the
	// name from the lab's address plan. (An agent names only the
	// workloads of its own host, and the manager does not fill in the
	// other end.)
	Unnamed int
	// Wrong describes records whose workload name is not the name of the
	// workload holding that address.
	Wrong []string

	seen map[string]bool // record IDs
}

// maxFlows is the most records one query asks for (the flow store's
// limit): a port scan alone makes thousands.
const maxFlows = 100000

// CollectFlows adds to set the flow records the manager saw since since.
func (s *State) CollectFlows(ctx context.Context, since time.Time, set *PairSet) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	flows, err := c.Flows(ctx, apiclient.FlowQuery{Since: since.UTC().Format(time.RFC3339), Limit: maxFlows})
	if err != nil {
		return err
	}
	owner := map[netip.Addr]string{}
	for _, w := range s.Workloads {
		for _, a := range w.addrs() {
			if ip, err := netip.ParseAddr(a); err == nil {
				owner[ip] = w.Name
			}
		}
	}
	if set.Pairs == nil {
		set.Pairs, set.seen = map[Pair]int{}, map[string]bool{}
	}
	for _, f := range flows {
		if set.seen[f.ID] {
			continue
		}
		set.seen[f.ID] = true
		set.Records++
		var names [2]string
		unnamed := false
		for i, end := range [2]struct{ ip, name string }{{f.Src, f.SrcWorkload}, {f.Dst, f.DstWorkload}} {
			ip, _ := netip.ParseAddr(end.ip)
			want := owner[ip.Unmap()]
			switch {
			case end.name == "" && want != "":
				unnamed = true
				names[i] = want
			case end.name != want && len(set.Wrong) < 20:
				set.Wrong = append(set.Wrong, fmt.Sprintf("flow %s: %s is workload %q, the record says %q", f.ID, end.ip, want, end.name))
				names[i] = end.name
			default:
				names[i] = end.name
			}
		}
		if unnamed {
			set.Unnamed++
		}
		if names[0] != "" && names[1] != "" {
			set.Pairs[Pair{names[0], names[1]}]++
		}
	}
	return nil
}

// WaitFlows polls the manager's flow records until they show at least
// pairs distinct workload pairs, or timeout passes; it reports progress
// every 10s and returns the pairs it saw.
func (s *State) WaitFlows(ctx context.Context, pairs int, timeout time.Duration, progress io.Writer) ([]Pair, error) {
	if progress == nil {
		progress = io.Discard
	}
	deadline := time.Now().Add(timeout)
	lastReport := time.Now()
	set := &PairSet{}
	since := s.Created
	for {
		// Records arrive some seconds after they were last seen (the
		// agents batch them): each poll looks back a minute.
		polled := time.Now()
		err := s.CollectFlows(ctx, since, set)
		if err == nil {
			since = polled.Add(-time.Minute)
			if len(set.Pairs) >= pairs {
				return sortedPairs(set.Pairs), nil
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				return sortedPairs(set.Pairs), fmt.Errorf("lab: no flow records after %s: the manager's API: %w", timeout, err)
			}
			return sortedPairs(set.Pairs), fmt.Errorf("lab: flow records of %d workload pairs after %s, want %d: are the agents reporting flows? see 'bulkhead lab status' and %s/agents/*.log",
				len(set.Pairs), timeout, pairs, s.Dir)
		}
		if time.Since(lastReport) >= 10*time.Second {
			lastReport = time.Now()
			fmt.Fprintf(progress, "waiting for flows: %d of %d workload pairs so far\n", len(set.Pairs), pairs)
		}
		if !sleepCtx(ctx, 2*time.Second) {
			return sortedPairs(set.Pairs), ctx.Err()
		}
	}
}

func sortedPairs(m map[Pair]int) []Pair {
	out := make([]Pair, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Src != out[j].Src {
			return out[i].Src < out[j].Src
		}
		return out[i].Dst < out[j].Dst
	})
	return out
}
