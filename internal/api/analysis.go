package api

import "time"

// Query parameters of GET /api/v1/map and GET /api/v1/compliance.
const (
	AnalysisLevel = "level" // env, app (default), tier, workload
	// AnalysisSince and AnalysisUntil take an RFC 3339 time or a duration
	// back from now ("10m", "24h", "7d").
	AnalysisSince    = "since"
	AnalysisUntil    = "until"
	AnalysisScope    = "scope"    // map: a tag expression one end must satisfy
	AnalysisRevision = "revision" // compliance: the revision to check against (default: latest)
)

// Window is the time window an analysis read: flows active at some time
// between Since and Until (zero: open).
type Window struct {
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
}

// ComplianceCounts are flow records per compliance class: green (allowed
// by a specific rule), amber (allowed only by the default rule, or with no
// enforcement point), red (blocked now, or a drop record), dashed (allowed,
// but a staged rule would block it).
type ComplianceCounts struct {
	Green  uint64 `json:"green"`
	Amber  uint64 `json:"amber"`
	Red    uint64 `json:"red"`
	Dashed uint64 `json:"dashed"`
	Total  uint64 `json:"total"`
}

// Traffic is what a set of flow records adds up to.
type Traffic struct {
	// Connections are connection records, Drops drop records (blocked
	// attempts) with their DroppedPackets.
	Connections    uint64 `json:"connections"`
	Drops          uint64 `json:"drops"`
	DroppedPackets uint64 `json:"droppedPackets,omitempty"`
	// BytesSent go from client to server, BytesReceived back.
	BytesSent     uint64    `json:"bytesSent"`
	BytesReceived uint64    `json:"bytesReceived"`
	Packets       uint64    `json:"packets"`
	FirstSeen     time.Time `json:"firstSeen,omitzero"`
	LastSeen      time.Time `json:"lastSeen,omitzero"`
	// Compliance is set when the answer was classified against a policy.
	Compliance *ComplianceCounts `json:"compliance,omitempty"`
}

// MapNode is a node of the application map.
type MapNode struct {
	ID    string `json:"id"`
	Level string `json:"level"`
	// Env, App, Tier and Workload place the node as far as its level goes.
	Env      string `json:"env,omitempty"`
	App      string `json:"app,omitempty"`
	Tier     string `json:"tier,omitempty"`
	Workload string `json:"workload,omitempty"`
	// External nodes are addresses that are no workload: one per address
	// at the workload level, one per range (private, internet, ...) above.
	External bool   `json:"external,omitempty"`
	Address  string `json:"address,omitempty"`
	Range    string `json:"range,omitempty"`
	// Members counts the workloads (or addresses) seen in the node;
	// Proposed how many of them discovery placed (they had no tags).
	Members  int     `json:"members"`
	Proposed int     `json:"proposed,omitempty"`
	Traffic  Traffic `json:"traffic"`
	// Alerts counts the IDS alerts the node is an end of in the window.
	Alerts uint64 `json:"alerts,omitempty"`
}

// MapService is a protocol and port (or ICMP type/code) used on an edge.
type MapService struct {
	Service     string `json:"service"` // tcp/443, udp/53, icmp/8/0
	Connections uint64 `json:"connections"`
	Drops       uint64 `json:"drops,omitempty"`
}

// MapEdge is the traffic from one node's clients to another node's
// servers; From equals To for traffic inside a node.
type MapEdge struct {
	From string `json:"from"`
	To   string `json:"to"`
	Traffic
	// Services are the busiest first, at most MaxEdgeServices;
	// MoreServices says how many were left out.
	Services     []MapService `json:"services"`
	MoreServices int          `json:"moreServices,omitempty"`
	// Users are the users behind the connections (from login sessions),
	// busiest first, at most MaxEdgeServices.
	Users []MapUser `json:"users,omitempty"`
	// Alerts counts the IDS alerts between the edge's ends in the window.
	Alerts uint64 `json:"alerts,omitempty"`
}

// MapUser is one user's connections on an edge.
type MapUser struct {
	User        string `json:"user"`
	Connections uint64 `json:"connections"`
}

// MaxEdgeServices bounds the services listed per edge.
const MaxEdgeServices = 10

// MapResponse answers GET /api/v1/map.
type MapResponse struct {
	Level  string `json:"level"`
	Window Window `json:"window"`
	Scope  string `json:"scope,omitempty"`
	// Revision is the policy the compliance counts are against.
	Revision int64     `json:"revision"`
	Nodes    []MapNode `json:"nodes"`
	Edges    []MapEdge `json:"edges"`
	Total    Traffic   `json:"total"`
	// Alerts counts the IDS alerts of the window in the map.
	Alerts uint64 `json:"alerts,omitempty"`
}

// ComplianceRow is the compliance of one node or edge.
type ComplianceRow struct {
	// Node is set for a node's row, From and To for an edge's.
	Node     string           `json:"node,omitempty"`
	From     string           `json:"from,omitempty"`
	To       string           `json:"to,omitempty"`
	Counts   ComplianceCounts `json:"counts"`
	Proposed int              `json:"proposed,omitempty"`
}

// ComplianceResponse answers GET /api/v1/compliance: every flow record of
// the window classified against a revision, summed per node (per
// application at the app level) and per edge.
type ComplianceResponse struct {
	Level    string           `json:"level"`
	Window   Window           `json:"window"`
	Revision int64            `json:"revision"`
	Nodes    []ComplianceRow  `json:"nodes"`
	Edges    []ComplianceRow  `json:"edges"`
	Total    ComplianceCounts `json:"total"`
}

// WhatIfRequest replays the stored flows of a window against a draft (the
// documents, merged into the latest revision as apply would) or against
// revision Revision, and compares with the latest revision.
type WhatIfRequest struct {
	Documents []Document `json:"documents,omitempty"`
	Revision  int64      `json:"revision,omitempty"`
	// Since and Until take an RFC 3339 time or a duration back from now;
	// empty Since replays everything stored.
	Since string `json:"since,omitempty"`
	Until string `json:"until,omitempty"`
	// Level of the edges reported (default app).
	Level string `json:"level,omitempty"`
	// Limit bounds the examples (default 20, at most 1000).
	Limit int `json:"limit,omitempty"`
}

// WhatIfOutcome is one policy's decision on a flow.
type WhatIfOutcome struct {
	Verdict string `json:"verdict"`
	// RuleID is 0 for a rule only the draft has (ids are given when it is
	// applied).
	RuleID uint32 `json:"ruleId"`
	Rule   string `json:"rule"`
}

// WhatIfExample is one distinct flow whose verdict the candidate changes.
type WhatIfExample struct {
	Change      string        `json:"change"` // drop: would have dropped; allow: would newly allow
	Src         string        `json:"src"`
	Dst         string        `json:"dst"`
	SrcWorkload string        `json:"srcWorkload,omitempty"`
	DstWorkload string        `json:"dstWorkload,omitempty"`
	From        string        `json:"from"` // the ends' nodes at the level
	To          string        `json:"to"`
	Service     string        `json:"service"`
	Flows       uint64        `json:"flows"`
	Bytes       uint64        `json:"bytes"`
	LastSeen    time.Time     `json:"lastSeen,omitzero"`
	Before      WhatIfOutcome `json:"before"`
	After       WhatIfOutcome `json:"after"`
}

// WhatIfEdge counts an edge's records whose verdict changes.
type WhatIfEdge struct {
	From       string `json:"from"`
	To         string `json:"to"`
	WouldDrop  uint64 `json:"wouldDrop"`
	WouldAllow uint64 `json:"wouldAllow"`
}

// WhatIfResponse answers POST /api/v1/whatif.
type WhatIfResponse struct {
	// Baseline is the latest revision; Candidate names what was replayed:
	// "draft" or "revision N".
	Baseline  int64  `json:"baseline"`
	Candidate string `json:"candidate"`
	Level     string `json:"level"`
	Window    Window `json:"window"`
	// Records were replayed; WouldDrop of them the candidate blocks and
	// the baseline allows, WouldAllow the reverse; Changed counts distinct
	// flows (source, destination, service) among them.
	Records    uint64          `json:"records"`
	WouldDrop  uint64          `json:"wouldDrop"`
	WouldAllow uint64          `json:"wouldAllow"`
	Changed    int             `json:"changed"`
	Edges      []WhatIfEdge    `json:"edges"`
	Examples   []WhatIfExample `json:"examples"`
}
