package api

import "time"

// Flow is one flow record as GET /api/v1/flows returns it: a connection
// (open with its totals so far, or ended) or the dropped attempts of one
// source to one destination port within an aggregation window.
type Flow struct {
	ID   string `json:"id"`
	Kind string `json:"kind"` // update (still open), end, drop
	Host string `json:"host"`

	Src         string `json:"src"`
	Dst         string `json:"dst"`
	Proto       string `json:"proto"` // tcp, udp, icmp, icmpv6, or the number
	SrcPort     uint16 `json:"srcPort,omitempty"`
	DstPort     uint16 `json:"dstPort,omitempty"`
	ICMPType    *uint8 `json:"icmpType,omitempty"`
	ICMPCode    *uint8 `json:"icmpCode,omitempty"`
	SrcWorkload string `json:"srcWorkload,omitempty"`
	DstWorkload string `json:"dstWorkload,omitempty"`

	// Totals sent by the source and by the destination. For a drop
	// record, SrcPackets is the number of dropped packets.
	SrcBytes   uint64 `json:"srcBytes"`
	SrcPackets uint64 `json:"srcPackets"`
	DstBytes   uint64 `json:"dstBytes"`
	DstPackets uint64 `json:"dstPackets"`

	Start time.Time  `json:"start"`
	End   *time.Time `json:"end,omitempty"`
	Seen  time.Time  `json:"seen"`

	RuleID  uint32 `json:"ruleId"`
	Verdict string `json:"verdict"`
	// StagedRuleID is the staged rule that would have decided this flow
	// had staged rules been enforced (0: none, or the same as RuleID).
	StagedRuleID uint32 `json:"stagedRuleId,omitempty"`
	// Mirror marks another host's view of a connection whose primary
	// record (from the source workload's host) is listed too; the map,
	// compliance and recommendations count only the primary.
	Mirror bool `json:"mirror,omitempty"`
	// User is the directory user behind the source, from login sessions.
	User string `json:"user,omitempty"`
	// What the agent's L7 reader learned of the connection, when an L7
	// rule made it inspect it: the AppID ("APP_SSH"), the TLS version
	// ("1.3") and the server name (TLS SNI, HTTP Host, DNS question).
	App        string `json:"app,omitempty"`
	TLSVersion string `json:"tlsVersion,omitempty"`
	ServerName string `json:"serverName,omitempty"`
}

// FlowQuery parameters of GET /api/v1/flows.
const (
	// FlowFrom and FlowTo take a workload name, an IP address or a CIDR.
	FlowFrom    = "from"
	FlowTo      = "to"
	FlowVerdict = "verdict" // allow, drop, reject
	FlowKind    = "kind"    // update, end, drop
	FlowRule    = "rule"    // rule id
	FlowStaged  = "staged"  // staged rule id
	FlowHost    = "host"
	// FlowSince and FlowUntil take an RFC 3339 time or a duration back
	// from now ("10m").
	FlowSince = "since"
	FlowUntil = "until"
	FlowProto = "proto" // tcp, udp, icmp, icmpv6 or a number
	FlowPort  = "port"  // destination port
	FlowLimit = "limit"
	FlowApp   = "app" // AppID the L7 reader saw, "APP_SSH"
)
