package nft

// IDSState is the intrusion detection part of a host's desired state: the
// signatures its workloads' IDS profiles chose, and which workload
// interface is inspected how. Nil when no profile applies to the host.
type IDSState struct {
	// Version names the signature sets the rules come from
	// ("et-open@3 local@1"), for display and logs.
	Version string
	// Vars are the address and port variables (name without "$" -> value
	// as Suricata writes it, e.g. "[10.0.0.0/8,fd00::/8]", "any", "80")
	// the rules are read with.
	Vars map[string]string
	// Rules is the text of every signature any workload below uses, one
	// rule each, ordered by sid.
	Rules []string
	// Workloads say which interface is inspected, in which mode, with
	// which signatures; ordered by interface.
	Workloads []IDSWorkload
}

// IDSWorkload is one inspected workload interface.
type IDSWorkload struct {
	Name      string // the workload
	Interface string // its host-side interface
	// Mode is "detect" (a copy of the traffic is inspected, nothing is
	// blocked) or "prevent" (inline: drop/reject signatures of a prevent
	// profile block the flow).
	Mode string
	// Profiles are the IDSProfile names that apply, sorted.
	Profiles []string
	// SIDs are the signatures inspected for this workload (sorted);
	// PreventSIDs the subset whose drop/reject actions are enforced
	// (those a prevent profile chose). Every other signature only alerts.
	SIDs        []uint32
	PreventSIDs []uint32
	// BlockSIDs and RejectSIDs (sorted, disjoint, subsets of
	// PreventSIDs) are the alert signatures enforced as drop and as
	// reject: those a prevent profile with preventAction drop or reject
	// chose (reject wins when profiles differ). A signature written as
	// drop, reject or pass keeps its action.
	BlockSIDs  []uint32
	RejectSIDs []uint32
}

// HasIDS reports whether the state asks for inspection: the agent then
// runs its IDS reader.
func (s *HostState) HasIDS() bool { return s.IDS != nil && len(s.IDS.Workloads) > 0 }
