package span

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/bulkhead/bulkhead/internal/nft"
)

// IDSSelection is what the manager chose to inspect at one local workload:
// its interface, mode, the IDS profiles that apply and their signatures.
type IDSSelection struct {
	Workload, Interface string
	Mode                string // "detect" or "prevent"
	Profiles            []string
	SIDs, PreventSIDs   []uint32
	// BlockSIDs and RejectSIDs are the alert signatures among
	// PreventSIDs enforced as drop and as reject (nft.IDSWorkload).
	BlockSIDs, RejectSIDs []uint32
}

// IDSSignature is the text of a signature as imported and the signature
// set version it comes from ("et-open@3").
type IDSSignature struct {
	Text string
	Set  string
}

// IDS assembles a host's IDS state from the selections of its workloads:
// the rule text of every signature any of them uses, ordered by sid, the
// variables those rules are read with, and the workloads ordered by
// interface, each with sorted, distinct sids. Workloads without
// signatures are left out; with none left the state is nil, so a host
// without IDS has the bytes it had before IDS existed. Equal inputs give
// equal states whatever their order.
func IDS(vars map[string]string, sel []IDSSelection, signature func(sid uint32) (IDSSignature, bool)) (*nft.IDSState, error) {
	st := &nft.IDSState{}
	used := map[uint32]bool{}
	for _, s := range sel {
		if len(s.SIDs) == 0 {
			continue
		}
		sids := sortedSIDs(s.SIDs)
		prevent := sortedSIDs(s.PreventSIDs)
		for _, sid := range prevent {
			if _, ok := slices.BinarySearch(sids, sid); !ok {
				return nil, fmt.Errorf("span: IDS workload %s: prevent sid %d is not among its sids", s.Workload, sid)
			}
		}
		block, reject := sortedSIDs(s.BlockSIDs), sortedSIDs(s.RejectSIDs)
		if err := enforcedSubset(s.Workload, prevent, block, reject); err != nil {
			return nil, err
		}
		for _, sid := range sids {
			used[sid] = true
		}
		st.Workloads = append(st.Workloads, nft.IDSWorkload{
			Name: s.Workload, Interface: s.Interface, Mode: s.Mode,
			Profiles: slices.Sorted(slices.Values(slices.Compact(slices.Sorted(slices.Values(s.Profiles))))),
			SIDs:     sids, PreventSIDs: prevent, BlockSIDs: block, RejectSIDs: reject,
		})
	}
	if len(st.Workloads) == 0 {
		return nil, nil
	}
	slices.SortFunc(st.Workloads, func(a, b nft.IDSWorkload) int {
		return cmp.Or(cmp.Compare(a.Interface, b.Interface), cmp.Compare(a.Name, b.Name))
	})
	sets := map[string]bool{}
	for _, sid := range slices.Sorted(maps.Keys(used)) {
		sig, ok := signature(sid)
		if !ok {
			return nil, fmt.Errorf("span: IDS: sid %d was selected but has no text", sid)
		}
		st.Rules = append(st.Rules, sig.Text)
		sets[sig.Set] = true
	}
	st.Version = strings.Join(slices.Sorted(maps.Keys(sets)), " ")
	st.Vars = maps.Clone(vars)
	if err := validateIDS(st); err != nil {
		return nil, err
	}
	return st, nil
}

func sortedSIDs(in []uint32) []uint32 {
	if len(in) == 0 {
		return nil
	}
	return slices.Compact(slices.Sorted(slices.Values(in)))
}

// validateIDS checks what the agent relies on: known modes, an interface
// per workload, sorted distinct sids, prevent sids among them and block
// and reject sids among those.
func validateIDS(st *nft.IDSState) error {
	if st == nil {
		return nil
	}
	if len(st.Workloads) == 0 {
		return fmt.Errorf("span: IDS state without workloads; leave it out")
	}
	for i, w := range st.Workloads {
		switch {
		case w.Mode != "detect" && w.Mode != "prevent":
			return fmt.Errorf("span: IDS workload %s: mode %q: want detect or prevent", w.Name, w.Mode)
		case w.Interface == "":
			return fmt.Errorf("span: IDS workload %s: no interface", w.Name)
		case i > 0 && st.Workloads[i-1].Interface >= w.Interface:
			return fmt.Errorf("span: IDS workload %s: interface %s is out of order or given twice", w.Name, w.Interface)
		case len(w.SIDs) == 0:
			return fmt.Errorf("span: IDS workload %s: no signatures", w.Name)
		case !strictlySorted(w.SIDs) || !strictlySorted(w.PreventSIDs) || !strictlySorted(w.BlockSIDs) || !strictlySorted(w.RejectSIDs):
			return fmt.Errorf("span: IDS workload %s: sids are not sorted and distinct", w.Name)
		}
		for _, sid := range w.PreventSIDs {
			if _, ok := slices.BinarySearch(w.SIDs, sid); !ok {
				return fmt.Errorf("span: IDS workload %s: prevent sid %d is not among its sids", w.Name, sid)
			}
		}
		if err := enforcedSubset(w.Name, w.PreventSIDs, w.BlockSIDs, w.RejectSIDs); err != nil {
			return err
		}
	}
	for i, r := range st.Rules {
		if strings.ContainsAny(r, "\n\r") || strings.TrimSpace(r) == "" {
			return fmt.Errorf("span: IDS rule #%d: a rule is one non-empty line", i)
		}
	}
	return nil
}

// enforcedSubset checks that the block and reject sids of a workload are
// prevent sids and that no sid is in both.
func enforcedSubset(workload string, prevent, block, reject []uint32) error {
	for _, l := range []struct {
		what string
		sids []uint32
	}{{"block", block}, {"reject", reject}} {
		for _, sid := range l.sids {
			if _, ok := slices.BinarySearch(prevent, sid); !ok {
				return fmt.Errorf("span: IDS workload %s: %s sid %d is not among its prevent sids", workload, l.what, sid)
			}
		}
	}
	for _, sid := range block {
		if _, ok := slices.BinarySearch(reject, sid); ok {
			return fmt.Errorf("span: IDS workload %s: sid %d is both a block and a reject sid", workload, sid)
		}
	}
	return nil
}

func strictlySorted(s []uint32) bool {
	for i := 1; i < len(s); i++ {
		if s[i-1] >= s[i] {
			return false
		}
	}
	return true
}

// wireIDS is the wire form of nft.IDSState; the field "ids" of a state is
// left out when there is none.
type wireIDS struct {
	Version   string            `json:"version,omitempty"`
	Vars      map[string]string `json:"vars,omitempty"`
	Rules     []string          `json:"rules"`
	Workloads []wireIDSWorkload `json:"workloads"`
}

type wireIDSWorkload struct {
	Name        string   `json:"name"`
	Interface   string   `json:"interface"`
	Mode        string   `json:"mode"`
	Profiles    []string `json:"profiles,omitempty"`
	SIDs        []uint32 `json:"sids"`
	PreventSIDs []uint32 `json:"preventSids,omitempty"`
	BlockSIDs   []uint32 `json:"blockSids,omitempty"`
	RejectSIDs  []uint32 `json:"rejectSids,omitempty"`
}

func toWireIDS(st *nft.IDSState) (*wireIDS, error) {
	if st == nil {
		return nil, nil
	}
	if err := validateIDS(st); err != nil {
		return nil, err
	}
	w := &wireIDS{Version: st.Version, Vars: st.Vars, Rules: st.Rules}
	if w.Rules == nil {
		w.Rules = []string{}
	}
	for _, x := range st.Workloads {
		w.Workloads = append(w.Workloads, wireIDSWorkload{Name: x.Name, Interface: x.Interface, Mode: x.Mode,
			Profiles: x.Profiles, SIDs: x.SIDs, PreventSIDs: x.PreventSIDs, BlockSIDs: x.BlockSIDs, RejectSIDs: x.RejectSIDs})
	}
	return w, nil
}

func fromWireIDS(w *wireIDS) (*nft.IDSState, error) {
	if w == nil {
		return nil, nil
	}
	// Empty lists and maps come back nil, as IDS builds them, so that a
	// decoded state encodes to the same bytes and compares equal.
	st := &nft.IDSState{Version: w.Version, Vars: w.Vars, Rules: nilIfEmpty(w.Rules)}
	if len(st.Vars) == 0 {
		st.Vars = nil
	}
	for _, x := range w.Workloads {
		st.Workloads = append(st.Workloads, nft.IDSWorkload{Name: x.Name, Interface: x.Interface, Mode: x.Mode,
			Profiles: nilIfEmpty(x.Profiles), SIDs: nilIfEmpty(x.SIDs), PreventSIDs: nilIfEmpty(x.PreventSIDs),
			BlockSIDs: nilIfEmpty(x.BlockSIDs), RejectSIDs: nilIfEmpty(x.RejectSIDs)})
	}
	if err := validateIDS(st); err != nil {
		return nil, err
	}
	return st, nil
}

func nilIfEmpty[S ~[]E, E any](v S) S {
	if len(v) == 0 {
		return nil
	}
	return v
}
