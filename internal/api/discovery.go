package api

import (
	"time"

	"github.com/bulkhead/bulkhead/internal/policy"
)

// RecommendRequest asks for a zero-trust draft policy of one scope from
// the flows observed in a window (POST /api/v1/recommend).
type RecommendRequest struct {
	// Scope is a tag expression selecting the workloads to protect, e.g.
	// app == "shop"; all() is the whole data center.
	Scope string `json:"scope"`
	// Since and Until bound the window: an RFC 3339 time or a duration
	// back from now ("7d", "12h"). Since defaults to 7d, Until to now.
	Since   string           `json:"since,omitempty"`
	Until   string           `json:"until,omitempty"`
	Options RecommendOptions `json:"options,omitzero"`
	// Apply publishes the draft as one revision.
	Apply bool `json:"apply,omitempty"`
	// Staged makes the rules the draft adds staged: counted, not enforced.
	Staged bool `json:"staged,omitempty"`
	// Prune removes the rules of an earlier recommendation that no flow
	// of the window used; otherwise they are only reported as stale.
	Prune bool `json:"prune,omitempty"`
}

// RecommendOptions tune the recommender; zero values take its defaults.
type RecommendOptions struct {
	// Name of the Policy; default "recommended-" and the scope.
	Name string `json:"name,omitempty"`
	// EphemeralPort is the first client port (default 32768).
	EphemeralPort uint16 `json:"ephemeralPort,omitempty"`
	// RangeGap and RangeMinPorts say when neighbouring ports become one
	// range (default: gaps up to 2, at least 3 ports).
	RangeGap      uint16 `json:"rangeGap,omitempty"`
	RangeMinPorts int    `json:"rangeMinPorts,omitempty"`
	// MaxExternalAddrs is how many outside addresses a rule lists before
	// it says any (default 16).
	MaxExternalAddrs int `json:"maxExternalAddrs,omitempty"`
	// ScanThreshold is how many distinct unanswered (destination, port)
	// targets make a source a scanner, left out of the draft (default 20;
	// -1 keeps scanners in).
	ScanThreshold int `json:"scanThreshold,omitempty"`
}

// Scanner is a source a recommendation left out: it tried many targets
// that never answered, so its connections justify no rule.
type Scanner struct {
	Address  string `json:"address"`
	Workload string `json:"workload,omitempty"`
	// Failed distinct (destination, port) targets, over Targets hosts and
	// Ports ports; Connections of the source in the window in all.
	Failed      int       `json:"failed"`
	Targets     int       `json:"targets"`
	Ports       int       `json:"ports"`
	Connections uint64    `json:"connections"`
	First       time.Time `json:"first,omitzero"`
	Last        time.Time `json:"last,omitzero"`
	Examples    []string  `json:"examples,omitempty"`
}

// RecommendResponse is the draft, why each rule is there, and what it
// changes.
type RecommendResponse struct {
	// Documents are the draft's objects in apply order (groups, services,
	// the policy), as POST /api/v1/apply takes them.
	Documents []Document `json:"documents"`
	// Evidence is keyed by rule name.
	Evidence map[string]RuleEvidence `json:"evidence"`
	Changes  RecommendChanges        `json:"changes"`
	// Reused names existing groups and services the draft refers to.
	Reused []string `json:"reused,omitempty"`
	// The window read and what was in it.
	Since       time.Time `json:"since"`
	Until       time.Time `json:"until"`
	Records     uint64    `json:"records"`
	Connections uint64    `json:"connections"`
	// Refused counts TCP connections refused or never answered (no rule
	// for them); Scanners are the sources left out.
	Refused  uint64    `json:"refused,omitempty"`
	Scanners []Scanner `json:"scanners,omitempty"`
	// Revision is the revision holding the draft when Apply was asked (the
	// latest one when applying changed nothing), and Applied its changes.
	Revision int64           `json:"revision,omitempty"`
	Applied  []policy.Change `json:"applied,omitempty"`
}

// RuleEvidence is what a rule covers: connections, bytes, when, examples.
type RuleEvidence struct {
	Flows     uint64    `json:"flows"`
	Bytes     uint64    `json:"bytes"`
	FirstSeen time.Time `json:"firstSeen,omitzero"`
	LastSeen  time.Time `json:"lastSeen,omitzero"`
	// Examples are connections, client first: "tcp 10.0.1.1:40000 -> 10.0.2.1:8080".
	Examples []string `json:"examples,omitempty"`
}

// RecommendChanges relates the draft to the policy of the same name that
// the latest revision holds, if any.
type RecommendChanges struct {
	// Incremental is true when that policy existed; the draft keeps its
	// rules and adds only what they do not already allow.
	Incremental bool     `json:"incremental"`
	Added       []string `json:"added,omitempty"`
	Unchanged   []string `json:"unchanged,omitempty"`
	Stale       []string `json:"stale,omitempty"`
	Removed     []string `json:"removed,omitempty"`
	// Promoted are staged rules of the earlier recommendation that this
	// one (not staged) enforces.
	Promoted []string `json:"promoted,omitempty"`
}

// DiscoverSince is the query parameter of GET /api/v1/discover/apps: the
// start of the window of flows read (RFC 3339 or a duration such as 7d).
const DiscoverSince = "since"

// AppProposal is the tags discovery proposes for one workload that has no
// app or tier, with its reasons.
type AppProposal struct {
	Workload string            `json:"workload"`
	Tags     map[string]string `json:"tags"`
	// Confidence is in [0, 1].
	Confidence float64 `json:"confidence"`
	// Community is the flow-graph community the workload fell into and
	// CommunityApp the app of its tagged servers.
	Community    int      `json:"community"`
	CommunityApp string   `json:"communityApp,omitempty"`
	Members      []string `json:"members,omitempty"`
	AppFrom      string   `json:"appFrom"`
	TierFrom     string   `json:"tierFrom"`
	// Serves lists the ports the workload answered on ("tcp/5432"),
	// busiest first; Peers the workloads it talked to, heaviest first.
	Serves []string  `json:"serves,omitempty"`
	Peers  []AppPeer `json:"peers,omitempty"`
}

// AppPeer is one workload a proposal's workload talked to.
type AppPeer struct {
	Workload string   `json:"workload"`
	App      string   `json:"app,omitempty"`
	Tier     string   `json:"tier,omitempty"`
	Outbound bool     `json:"outbound"`
	Ports    []string `json:"ports,omitempty"`
	Flows    uint64   `json:"flows"`
	Bytes    uint64   `json:"bytes"`
}

// AcceptAppsRequest writes proposed tags into the inventory
// (POST /api/v1/discover/apps/accept). Only tags a workload does not have
// are written, and only on workloads without an app or tier tag.
type AcceptAppsRequest struct {
	// Workloads to accept the proposals of; or All.
	Workloads []string `json:"workloads,omitempty"`
	All       bool     `json:"all,omitempty"`
	// Since is the window the proposals are computed from, as for GET.
	Since string `json:"since,omitempty"`
}

// AcceptAppsResponse says which workloads got which tags.
type AcceptAppsResponse struct {
	Accepted []AppProposal   `json:"accepted"`
	Skipped  []SkippedAccept `json:"skipped,omitempty"`
	Changes  []policy.Change `json:"changes"`
	Revision int64           `json:"revision"`
}

// SkippedAccept is a workload whose proposal was not written, and why.
type SkippedAccept struct {
	Workload string `json:"workload"`
	Reason   string `json:"reason"`
}
