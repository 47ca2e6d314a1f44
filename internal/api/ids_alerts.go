package api

// GET /api/v1/ids/alerts answers a JSON array of IDS alerts, newest first,
// each a Suricata EVE JSON record (event_type "alert") exactly as stored:
// the agent's record with its "bulkhead" object completed by the manager
// (host from the agent's certificate, workloads from the inventory).

// IDSAlertsPath is the route of the alert list.
const IDSAlertsPath = Prefix + "/ids/alerts"

// Query parameters of GET /api/v1/ids/alerts.
const (
	// AlertSince and AlertUntil take an RFC 3339 time, or a duration
	// ago ("1h", or days: "7d").
	AlertSince = "since"
	AlertUntil = "until"
	// AlertSeverity keeps alerts of this severity or worse (1 is the
	// worst): 2 means 1 and 2.
	AlertSeverity = "severity"
	// AlertWorkload keeps alerts with this workload at either end.
	AlertWorkload = "workload"
	AlertSID      = "sid"
	AlertHost     = "host"
	// AlertLimit caps the answer (default 100, at most 100000).
	AlertLimit = "limit"
)

// EVEAlert is the part of a Suricata EVE alert record that Bulkhead reads:
// the manager to store and index it, the CLI to show it as a table. Field
// names are Suricata's.
type EVEAlert struct {
	Timestamp string       `json:"timestamp"`
	FlowID    uint64       `json:"flow_id,omitempty"`
	InIface   string       `json:"in_iface,omitempty"`
	EventType string       `json:"event_type"`
	SrcIP     string       `json:"src_ip"`
	SrcPort   uint16       `json:"src_port,omitempty"`
	DestIP    string       `json:"dest_ip"`
	DestPort  uint16       `json:"dest_port,omitempty"`
	Proto     string       `json:"proto"`
	AppProto  string       `json:"app_proto,omitempty"`
	Alert     EVEAlertInfo `json:"alert"`
	Bulkhead  EVEBulkhead  `json:"bulkhead"`
}

// EVEAlertInfo is an EVE record's "alert" object.
type EVEAlertInfo struct {
	Action      string `json:"action"` // allowed, blocked
	GID         uint32 `json:"gid"`
	SignatureID uint32 `json:"signature_id"`
	Rev         uint32 `json:"rev"`
	Signature   string `json:"signature"`
	Category    string `json:"category"`
	Severity    int    `json:"severity"`
}

// EVEBulkhead is the "bulkhead" object Bulkhead adds to an EVE record: the
// host whose agent raised the alert, the workloads at both ends, the
// workload interface, and the IDS profile and its mode (detect, prevent).
type EVEBulkhead struct {
	Host         string `json:"host,omitempty"`
	SrcWorkload  string `json:"src_workload,omitempty"`
	DestWorkload string `json:"dest_workload,omitempty"`
	Interface    string `json:"interface,omitempty"`
	Profile      string `json:"profile,omitempty"`
	Mode         string `json:"mode,omitempty"`
}
