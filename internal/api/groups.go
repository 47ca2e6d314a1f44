package api

// GroupMembersRevision is the query parameter of GET
// /api/v1/groups/{name}/members: the revision whose policy to resolve
// (default: the latest), always against the current inventory.
const GroupMembersRevision = "revision"

// GroupMembers answers GET /api/v1/groups/{name}/members: what makes an
// endpoint a member of the group, resolved by the evaluator (nested groups
// included) the way flows are decided.
type GroupMembers struct {
	Group    string `json:"group"`
	Revision int64  `json:"revision"`
	// Workloads have an address in the group (by tag match, by a listed IP
	// or CIDR, or through a nested group).
	Workloads []GroupMemberWorkload `json:"workloads"`
	// Addresses are the group's IPs and CIDRs outside workloads, whole
	// even where a workload lies inside one.
	Addresses []string `json:"addresses"`
	// Users make a connection's source a member, FQDNs its destination.
	Users []string `json:"users,omitempty"`
	FQDNs []string `json:"fqdns,omitempty"`
}

// GroupMemberWorkload is a workload of a group with its addresses in it.
type GroupMemberWorkload struct {
	Name string   `json:"name"`
	IPs  []string `json:"ips"`
}
