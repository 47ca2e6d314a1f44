package api

import (
	"encoding/json"
	"time"
)

// User identity (issue 7): directory sources, their users and groups, and
// login sessions that say who is behind an address and source port.

// Query parameters of the identity routes, and GET /flows?user=.
const (
	FlowUser       = "user"
	UserGroup      = "group" // GET /directory/users?group=
	SessionIP      = "ip"    // GET /identity/sessions?ip=, /identity/who?ip=
	SessionUser    = "user"  // GET /identity/sessions?user=
	SessionOpen    = "open"  // GET /identity/sessions?open=true
	WhoPort        = "port"  // GET /identity/who?port=
	WhoAt          = "at"    // GET /identity/who?at=RFC3339
	SourceKindLDAP = "ldap"  // api.Source.Kind of a directory source
)

// DirectorySourceRequest is the body of POST /api/v1/directory/sources.
type DirectorySourceRequest struct {
	Name string `json:"name"`
	// URL is ldap://host[:389] or ldaps://host[:636].
	URL      string `json:"url"`
	BindDN   string `json:"bindDN,omitempty"`
	Password string `json:"password,omitempty"`
	BaseDN   string `json:"baseDN"`
	// Filters default to ones that find Active Directory's and OpenLDAP's
	// (RFC 2307, groupOfNames) users and groups.
	UserFilter  string `json:"userFilter,omitempty"`
	GroupFilter string `json:"groupFilter,omitempty"`
	StartTLS    bool   `json:"startTLS,omitempty"`
	Insecure    bool   `json:"insecure,omitempty"`
	// Interval between syncs as a Go duration; default 15m, "0" syncs
	// only on request.
	Interval string `json:"interval,omitempty"`
}

// DirectorySource is a configured directory source. The password is never
// returned.
type DirectorySource struct {
	Name        string     `json:"name"`
	URL         string     `json:"url"`
	BindDN      string     `json:"bindDN,omitempty"`
	BaseDN      string     `json:"baseDN"`
	UserFilter  string     `json:"userFilter"`
	GroupFilter string     `json:"groupFilter"`
	StartTLS    bool       `json:"startTLS,omitempty"`
	Insecure    bool       `json:"insecure,omitempty"`
	Interval    string     `json:"interval"`
	Users       int        `json:"users"`
	Groups      int        `json:"groups"`
	LastSync    *time.Time `json:"lastSync,omitempty"`
	LastError   string     `json:"lastError,omitempty"`
}

// DirectorySync is what a directory sync read and changed.
type DirectorySync struct {
	Source string `json:"source"`
	Users  int    `json:"users"`
	Groups int    `json:"groups"`
	// AddedUsers and RemovedUsers compare with the previous sync.
	AddedUsers   []string `json:"addedUsers"`
	RemovedUsers []string `json:"removedUsers"`
	// Skipped says what was left out and why.
	Skipped []string `json:"skipped"`
}

// DirectoryUser is a synced user with every group it is in, nesting
// resolved.
type DirectoryUser struct {
	Name    string   `json:"name"`
	Source  string   `json:"source"`
	DN      string   `json:"dn,omitempty"`
	Display string   `json:"display,omitempty"`
	Groups  []string `json:"groups"`
}

// DirectoryGroup is a synced group: its direct members, and every user in
// it through nesting.
type DirectoryGroup struct {
	Name    string   `json:"name"`
	Source  string   `json:"source"`
	DN      string   `json:"dn,omitempty"`
	Users   []string `json:"users"`
	Groups  []string `json:"groups"`
	Members []string `json:"members"`
}

// IdentityEventsRequest is the body of POST /api/v1/identity/events. Each
// event is one of: a Windows Security event 4624 (logon) or 4634 (logoff)
// as a SIEM exports it (EventID, TargetUserName, TargetDomainName,
// IpAddress, TimeCreated, TargetLogonId; at the top or in EventData); a
// session {user, ip, start, end}; an RDSH session {user, ip, ports:
// "20000-20999", start, end}, whose user is the one behind connections from
// those source ports.
type IdentityEventsRequest struct {
	Events []json.RawMessage `json:"events"`
}

// IdentityEventsResult says what the events did.
type IdentityEventsResult struct {
	Accepted int `json:"accepted"`
	// Started and Ended count sessions opened and closed.
	Started int `json:"started"`
	Ended   int `json:"ended"`
	// Ignored events are valid but say nothing about who is where (a
	// computer account, a local logon, another event id).
	Ignored []BadEvent `json:"ignored"`
	Bad     []BadEvent `json:"bad"`
}

// BadEvent is an event by its index in the request, and why it was not
// used.
type BadEvent struct {
	Index  int    `json:"index"`
	Reason string `json:"reason"`
}

// IdentitySession is a user logged on at an address, or at a port range of
// it (RDSH).
type IdentitySession struct {
	ID      int64      `json:"id"`
	User    string     `json:"user"`
	Domain  string     `json:"domain,omitempty"`
	IP      string     `json:"ip"`
	Ports   string     `json:"ports,omitempty"`
	Start   time.Time  `json:"start"`
	End     *time.Time `json:"end,omitempty"`
	Source  string     `json:"source"`
	LogonID string     `json:"logonId,omitempty"`
	// Groups are the user's directory groups, nesting resolved.
	Groups []string `json:"groups"`
}

// IdentityWho is the answer of GET /api/v1/identity/who.
type IdentityWho struct {
	IP   string    `json:"ip"`
	Port uint16    `json:"port,omitempty"`
	At   time.Time `json:"at"`
	// User is "" when no session holds the address and port then.
	User    string           `json:"user"`
	Session *IdentitySession `json:"session,omitempty"`
}
