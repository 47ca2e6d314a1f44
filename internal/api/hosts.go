package api

import "time"

// BootstrapTokenRequest asks for a one-time token that enrolls an agent.
type BootstrapTokenRequest struct {
	// TTL as a Go duration ("1h"); empty means one hour.
	TTL string `json:"ttl,omitempty"`
	// Host, when set, is the only host name the token enrolls.
	Host string `json:"host,omitempty"`
}

// BootstrapTokenCreated carries the token's secret, shown once, and what an
// agent needs besides it to enroll.
type BootstrapTokenCreated struct {
	ID      string    `json:"id"`
	Secret  string    `json:"secret"`
	Host    string    `json:"host,omitempty"`
	Expires time.Time `json:"expires"`
	// CAFingerprint is the SHA-256 of the manager's CA certificate, hex:
	// the agent's --ca-fingerprint.
	CAFingerprint string `json:"caFingerprint"`
	// AgentAddress is host:port of the manager's agent listener, the
	// agent's --manager; empty when the agent channel is off.
	AgentAddress string `json:"agentAddress,omitempty"`
}

// Host is an enrolled agent host and the state of its policy.
type Host struct {
	Name      string `json:"name"`
	Connected bool   `json:"connected"`
	// InSync is true when the host is connected and enforces the newest
	// desired state computed for it, without error.
	InSync   bool       `json:"inSync"`
	LastSeen *time.Time `json:"lastSeen,omitempty"`
	Enrolled time.Time  `json:"enrolled"`
	Revoked  *time.Time `json:"revoked,omitempty"`
	// RealizedRevision is what the host's kernel holds; DesiredRevision
	// the revision of the newest desired state sent to it (later
	// revisions that do not change it are not resent);
	// PublishedRevision the manager's latest.
	RealizedRevision  int64  `json:"realizedRevision"`
	DesiredRevision   int64  `json:"desiredRevision"`
	PublishedRevision int64  `json:"publishedRevision"`
	Workloads         int    `json:"workloads"`
	LastError         string `json:"lastError,omitempty"`
	CertFingerprint   string `json:"certFingerprint"`
}
