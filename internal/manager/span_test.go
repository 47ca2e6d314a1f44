package manager

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/nft"
	"github.com/bulkhead/bulkhead/internal/span"
)

// sessionPolicy: the HR application on host hr-host, which only alice may
// reach, and an RDSH host everyone logs on to.
const sessionPolicy = `apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: rdsh1}
spec: {ips: [10.78.5.10], host: rdsh-host, interface: bhwrdsh1}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: hr1}
spec: {ips: [10.78.4.10], host: hr-host, interface: bhwhr1, tags: {app: hr}}
---
apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: hr-users}
spec: {users: [Alice]}
---
apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: hr-app}
spec: {match: app == "hr"}
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: hr}
spec:
  category: Application
  rules:
  - {name: hr-web, sources: [hr-users], destinations: [hr-app], services: [tcp/443], action: allow}
---
apiVersion: bulkhead.io/v1
kind: DefaultRule
metadata: {name: default}
spec: {action: drop}
`

// TestIdentityEventsChangeHostSpan: an RDSH logon of a user a rule names
// gives the destination's host a session range (alice's ports are a peer
// of their own there); a logon of a user no rule names, and the RDSH
// host's own state, change nothing; the logoff takes the range away.
func TestIdentityEventsChangeHostSpan(t *testing.T) {
	tm := startManager(t)
	op := tm.client(t, api.RoleOperator)
	ctx := context.Background()
	applyText(t, op, sessionPolicy)

	state := func(host string) *nft.HostState {
		t.Helper()
		_, format, payload, err := tm.srv.hostSpan(ctx, host)
		if err != nil || format != span.Format {
			t.Fatalf("span of %s: %q, %v", host, format, err)
		}
		st, err := span.Decode(payload)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	send := func(events ...string) {
		t.Helper()
		req := api.IdentityEventsRequest{}
		for _, e := range events {
			req.Events = append(req.Events, json.RawMessage(e))
		}
		res, err := op.IdentityEvents(ctx, req)
		if err != nil || res.Accepted != len(events) {
			t.Fatalf("events: %+v, %v", res, err)
		}
	}
	before, rdshBefore := state("hr-host"), state("rdsh-host")
	if len(before.Sessions) != 0 {
		t.Fatalf("sessions before any logon: %+v", before.Sessions)
	}
	start := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	send(`{"user": "bob", "ip": "10.78.5.10", "ports": "21000-21999", "start": "` + start + `"}`)
	if st := state("hr-host"); len(st.Sessions) != 0 {
		t.Errorf("bob's session (no rule names him) gave sessions %+v", st.Sessions)
	}
	send(`{"user": "alice", "ip": "10.78.5.10", "ports": "20000-20999", "start": "` + start + `"}`)
	after := state("hr-host")
	if len(after.Sessions) != 1 || after.Sessions[0].Addr != netip.MustParseAddr("10.78.5.10") || after.Sessions[0].Ports != nft.Ports(20000, 20999) {
		t.Fatalf("sessions after alice's logon: %+v", after.Sessions)
	}
	id := after.Sessions[0].Identity
	var allows bool
	for _, e := range after.Workloads[0].Ingress {
		if e.Peer == id && e.Proto == nft.ProtoTCP && e.Ports == nft.Port(443) && e.Action == nft.Allow {
			allows = true
		}
	}
	if !allows {
		t.Errorf("hr1's ingress %+v: no tcp/443 allow for alice's session identity %d", after.Workloads[0].Ingress, id)
	}
	if st := state("rdsh-host"); len(st.Sessions) != 0 || len(st.Identities) != len(rdshBefore.Identities) {
		t.Errorf("the RDSH host's own state changed: %+v", st)
	}
	send(`{"user": "alice", "ip": "10.78.5.10", "ports": "20000-20999", "end": "` + time.Now().UTC().Format(time.RFC3339Nano) + `"}`)
	if st := state("hr-host"); len(st.Sessions) != 0 {
		t.Errorf("sessions after alice's logoff: %+v", st.Sessions)
	}
	// A whole-address login (a VDI desktop) keys every source port of
	// the desktop's address, unless the address has port-range sessions.
	send(`{"user": "alice", "ip": "10.78.6.20", "start": "` + start + `"}`)
	if st := state("hr-host"); len(st.Sessions) != 1 || st.Sessions[0].Addr != netip.MustParseAddr("10.78.6.20") || st.Sessions[0].Ports != nft.Ports(1, 65535) {
		t.Errorf("sessions after alice's desktop login: %+v", st.Sessions)
	}
	send(`{"user": "alice", "ip": "10.78.6.20", "ports": "20000-20999", "start": "` + start + `"}`)
	if st := state("hr-host"); len(st.Sessions) != 1 || st.Sessions[0].Ports != nft.Ports(20000, 20999) {
		t.Errorf("a port-range session at the same address should replace the whole-address one: %+v", st.Sessions)
	}
}
