package directory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Event is a logon or logoff, from any of the formats ParseEvent reads.
type Event struct {
	Logon   bool // false: a logoff
	User    string
	Domain  string
	IP      netip.Addr // invalid for a Windows logoff, which names its logon id
	Ports   PortRange
	Start   time.Time // logon time
	End     time.Time // logoff time; for a logon, set when the session is already over
	LogonID string
	Source  string // windows, login or rdsh
}

// Windows Security event ids.
const (
	EventLogon  = 4624
	EventLogoff = 4634
)

// ErrIgnored marks an event that is valid but says nothing about who is at
// an address (a computer account, a local logon); it is skipped, not bad.
var ErrIgnored = errors.New("ignored")

// ParseEvent reads one event. A JSON object with an EventID is a Windows
// Security event as a SIEM exports it: 4624 (logon) or 4634 (logoff), with
// TargetUserName, TargetDomainName, IpAddress, TimeCreated and
// TargetLogonId, at the top or inside EventData; other fields are ignored.
// IpPort is not read: it is the port of the authentication, not of the
// user's connections. Any other object is a session {user, ip, start, end},
// with ports for a session on a multi-user host ("20000-20999"); its
// unknown fields are errors. A session with only an end is a logoff; with
// neither start nor end, a logon now.
func ParseEvent(raw []byte, now time.Time) (Event, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return Event{}, fmt.Errorf("not a JSON object: %w", err)
	}
	if probe == nil {
		return Event{}, errors.New("not a JSON object")
	}
	for k := range probe {
		if strings.EqualFold(k, "EventID") {
			return parseWindows(probe)
		}
	}
	return parseSession(raw, now)
}

// windowsFields are the event's fields this reads.
var windowsFields = []string{"EventID", "TargetUserName", "TargetDomainName", "IpAddress", "TimeCreated", "TargetLogonId"}

func parseWindows(obj map[string]json.RawMessage) (Event, error) {
	fields := map[string]json.RawMessage{}
	pick := func(m map[string]json.RawMessage) {
		for k, v := range m {
			for _, f := range windowsFields {
				if strings.EqualFold(k, f) {
					fields[f] = v
				}
			}
		}
	}
	for k, v := range obj {
		if strings.EqualFold(k, "EventData") {
			var inner map[string]json.RawMessage
			if err := json.Unmarshal(v, &inner); err != nil {
				return Event{}, fmt.Errorf("EventData: not an object: %w", err)
			}
			pick(inner)
		}
	}
	pick(obj) // fields at the top win over EventData's
	id, err := jsonInt(fields["EventID"])
	if err != nil {
		return Event{}, fmt.Errorf("EventID: %w", err)
	}
	e := Event{Source: "windows"}
	switch id {
	case EventLogon:
		e.Logon = true
	case EventLogoff:
	default:
		return Event{}, fmt.Errorf("EventID %d: %w: only 4624 (logon) and 4634 (logoff) say who is where", id, ErrIgnored)
	}
	user, _ := jsonString(fields["TargetUserName"])
	e.User = Name(user)
	if e.User == "" || e.User == "-" {
		return Event{}, errors.New("TargetUserName: missing")
	}
	if strings.HasSuffix(e.User, "$") || e.User == "anonymous logon" {
		return Event{}, fmt.Errorf("TargetUserName %q: %w: a computer or anonymous account", user, ErrIgnored)
	}
	dom, _ := jsonString(fields["TargetDomainName"])
	e.Domain = Name(dom)
	e.LogonID, _ = jsonString(fields["TargetLogonId"])
	e.LogonID = strings.ToLower(strings.TrimSpace(e.LogonID))
	t, err := parseEventTime(fields["TimeCreated"])
	if err != nil {
		return Event{}, fmt.Errorf("TimeCreated: %w", err)
	}
	if e.Logon {
		e.Start = t
		ip, _ := jsonString(fields["IpAddress"])
		if ip == "" || ip == "-" {
			return Event{}, fmt.Errorf("IpAddress %q: %w: a local logon has no address", ip, ErrIgnored)
		}
		if e.IP, err = netip.ParseAddr(strings.TrimSpace(ip)); err != nil {
			return Event{}, fmt.Errorf("IpAddress %q: not an IP address", ip)
		}
		e.IP = e.IP.Unmap().WithZone("")
		if e.IP.IsLoopback() || e.IP.IsUnspecified() {
			return Event{}, fmt.Errorf("IpAddress %s: %w: a local logon", e.IP, ErrIgnored)
		}
	} else {
		e.End = t
		if e.LogonID == "" {
			return Event{}, errors.New("TargetLogonId: missing: a logoff names the logon it ends")
		}
	}
	return e, nil
}

// sessionEvent is the simple form.
type sessionEvent struct {
	User   string     `json:"user"`
	Domain string     `json:"domain"`
	IP     string     `json:"ip"`
	Ports  string     `json:"ports"`
	Start  *time.Time `json:"start"`
	End    *time.Time `json:"end"`
}

func parseSession(raw []byte, now time.Time) (Event, error) {
	var s sessionEvent
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Event{}, fmt.Errorf("session {user, ip, ports, start, end}: %w", err)
	}
	e := Event{User: Name(s.User), Domain: Name(s.Domain), Source: "login"}
	if e.User == "" {
		return Event{}, errors.New("user: missing")
	}
	var err error
	if e.IP, err = netip.ParseAddr(s.IP); err != nil {
		return Event{}, fmt.Errorf("ip %q: not an IP address", s.IP)
	}
	e.IP = e.IP.Unmap().WithZone("")
	if e.Ports, err = ParsePortRange(s.Ports); err != nil {
		return Event{}, err
	}
	if !e.Ports.Whole() {
		e.Source = "rdsh"
	}
	if s.End != nil {
		e.End = s.End.UTC()
	}
	switch {
	case s.Start != nil:
		e.Logon, e.Start = true, s.Start.UTC()
		if !e.End.IsZero() && e.End.Before(e.Start) {
			return Event{}, fmt.Errorf("end %s: before start %s", e.End.Format(time.RFC3339), e.Start.Format(time.RFC3339))
		}
	case s.End == nil:
		e.Logon, e.Start = true, now.UTC()
	}
	return e, nil
}

func jsonString(raw json.RawMessage) (string, error) {
	if len(raw) == 0 {
		return "", errors.New("missing")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", errors.New("not a string")
	}
	return s, nil
}

// jsonInt reads a number or a string of digits.
func jsonInt(raw json.RawMessage) (int, error) {
	if len(raw) == 0 {
		return 0, errors.New("missing")
	}
	var n int
	if err := json.Unmarshal(raw, &n); err == nil {
		return n, nil
	}
	s, err := jsonString(raw)
	if err == nil {
		if n, err = strconv.Atoi(strings.TrimSpace(s)); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s: not a number", raw)
}

// parseEventTime reads RFC 3339, PowerShell's "/Date(ms)/" and the
// {"SystemTime": "..."} object of events converted from XML.
func parseEventTime(raw json.RawMessage) (time.Time, error) {
	if len(raw) == 0 {
		return time.Time{}, errors.New("missing")
	}
	var obj struct {
		SystemTime string
	}
	if raw[0] == '{' {
		if err := json.Unmarshal(raw, &obj); err != nil || obj.SystemTime == "" {
			return time.Time{}, fmt.Errorf("%s: want an object with SystemTime", raw)
		}
		raw, _ = json.Marshal(obj.SystemTime)
	}
	s, err := jsonString(raw)
	if err != nil {
		return time.Time{}, err
	}
	if ms, ok := strings.CutPrefix(s, "/Date("); ok {
		ms, _, _ = strings.Cut(ms, ")")
		// "/Date(1714557600000+0200)/": the offset is display only.
		if i := strings.IndexAny(ms[min(1, len(ms)):], "+-"); i >= 0 {
			ms = ms[:i+min(1, len(ms))]
		}
		n, err := strconv.ParseInt(ms, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q: not /Date(milliseconds)/", s)
		}
		return time.UnixMilli(n).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want RFC 3339 (2024-05-01T10:00:00Z) or /Date(ms)/", s)
	}
	return t.UTC(), nil
}
