package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
)

func newIdentityCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "User identity: directory users and groups, login sessions, who is behind an address",
		Long: `User identity lets rules name people. Directory sources ('bulkhead source add
ldap') sync users and groups from LDAP or Active Directory, nested groups
resolved; a Group with directoryGroups then matches connections of their
users. Login sessions, sent as events (Windows 4624/4634 as a SIEM exports
them, or {user, ip, start, end}), say who is at an address; on a multi-user
host (RDSH) each session has its own source ports, {user, ip, ports, start,
end}, so each connection has its user. Flow records carry it.`,
	}
	cmd.AddCommand(newIdentityUsersCmd(g), newIdentityGroupsCmd(g), newIdentitySessionsCmd(g),
		newIdentityWhoCmd(g), newIdentityEventsCmd(g))
	return cmd
}

func newIdentityUsersCmd(g *globals) *cobra.Command {
	var group string
	cmd := &cobra.Command{
		Use:   "users",
		Short: "List synced directory users and their groups (nesting resolved)",
		Example: `  bulkhead identity users
  bulkhead identity users --group hr`,
		Args: cobra.NoArgs,
		RunE: listRun(g, func(c *apiclient.Client, ctx context.Context) ([]api.DirectoryUser, error) {
			return c.DirectoryUsers(ctx, group)
		},
			[]string{"NAME", "DISPLAY NAME", "SOURCE", "GROUPS"},
			func(u api.DirectoryUser) []string {
				return []string{u.Name, dash(u.Display), u.Source, dash(strings.Join(u.Groups, ","))}
			}),
	}
	cmd.Flags().StringVar(&group, "group", "", "only users in this directory group, directly or through nesting")
	return cmd
}

func newIdentityGroupsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "groups",
		Short: "List synced directory groups: nested groups and every user in them",
		Args:  cobra.NoArgs,
		RunE: listRun(g, (*apiclient.Client).DirectoryGroups,
			[]string{"NAME", "SOURCE", "NESTED GROUPS", "MEMBERS"},
			func(gr api.DirectoryGroup) []string {
				return []string{gr.Name, gr.Source, dash(strings.Join(gr.Groups, ",")), dash(strings.Join(gr.Members, ","))}
			}),
	}
}

func newIdentitySessionsCmd(g *globals) *cobra.Command {
	var q apiclient.SessionQuery
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "List login sessions, newest first",
		Example: `  bulkhead identity sessions --open
  bulkhead identity sessions --ip 10.77.5.10`,
		Args: cobra.NoArgs,
		RunE: listRun(g, func(c *apiclient.Client, ctx context.Context) ([]api.IdentitySession, error) {
			return c.IdentitySessions(ctx, q)
		},
			[]string{"USER", "ADDRESS", "PORTS", "START", "END", "SOURCE", "GROUPS"},
			func(s api.IdentitySession) []string {
				end := "(open)"
				if s.End != nil {
					end = s.End.Local().Format(time.DateTime)
				}
				return []string{s.User, s.IP, dash(s.Ports), s.Start.Local().Format(time.DateTime), end, s.Source, dash(strings.Join(s.Groups, ","))}
			}),
	}
	fl := cmd.Flags()
	fl.StringVar(&q.IP, "ip", "", "only sessions at this address")
	fl.StringVar(&q.User, "user", "", "only sessions of this user")
	fl.BoolVar(&q.Open, "open", false, "only sessions not ended")
	return cmd
}

// splitIPPort reads "10.0.0.1", "10.0.0.1:20001", "fd00::1" or
// "[fd00::1]:20001".
func splitIPPort(s string) (string, uint16, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String(), 0, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err == nil {
		a, aerr := netip.ParseAddr(host)
		n, perr := strconv.ParseUint(port, 10, 16)
		if aerr == nil && perr == nil && n > 0 {
			return a.String(), uint16(n), nil
		}
	}
	return "", 0, fmt.Errorf("%q: want IP or IP:PORT ([IPv6]:PORT)", s)
}

func newIdentityWhoCmd(g *globals) *cobra.Command {
	var at string
	cmd := &cobra.Command{
		Use:   "who IP[:PORT]",
		Short: "Who is behind an address (and source port) now or at a time",
		Long: `Show the user whose session holds an address, or a source port of it on a
multi-user host, and that user's directory groups. A session of a port
range beats one of the whole address.`,
		Example: `  bulkhead identity who 10.77.5.10:20001
  bulkhead identity who 10.77.6.10 --at 2h`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			ip, port, err := splitIPPort(args[0])
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			who, err := c.IdentityWho(ctx(cmd), ip, port, at)
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(who)
			}
			if who.Session == nil {
				fmt.Fprintf(g.stdout, "no session holds %s at %s\n", args[0], who.At.Local().Format(time.DateTime))
				return nil
			}
			s := who.Session
			where := s.IP
			if s.Ports != "" {
				where += " ports " + s.Ports
			}
			fmt.Fprintf(g.stdout, "%s (session at %s since %s, %s)\ngroups: %s\n", who.User, where,
				s.Start.Local().Format(time.DateTime), s.Source, dash(strings.Join(s.Groups, ",")))
			return nil
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "at this time (RFC 3339) or this long ago (10m); default now")
	return cmd
}

func newIdentityEventsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "events FILE|-",
		Short: "Send login and logoff events: a JSON array, or one JSON object per line",
		Long: `Send login and logoff events to the manager. Each event is one of:

  a Windows Security event 4624 (logon) or 4634 (logoff) as a SIEM exports it:
    {"EventID": 4624, "TargetUserName": "alice", "TargetDomainName": "CORP",
     "IpAddress": "10.77.6.10", "TimeCreated": "2024-05-01T09:00:00Z", "TargetLogonId": "0x3e7a1"}
  a session of a whole address: {"user": "alice", "ip": "10.77.6.10", "start": "...", "end": "..."}
  an RDSH session: {"user": "bob", "ip": "10.77.5.10", "ports": "21000-21999", "start": "..."}

A session with an end and no start ends the open one. Bad events are
reported with their index and why; the others are applied.`,
		Example: `  bulkhead identity events security-events.json
  echo '{"user":"alice","ip":"10.77.5.10","ports":"20000-20999"}' | bulkhead identity events -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			var data []byte
			var err error
			if args[0] == "-" {
				data, err = io.ReadAll(g.stdin)
			} else {
				data, err = os.ReadFile(args[0])
			}
			if err != nil {
				return err
			}
			events, err := splitEvents(data)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.IdentityEvents(ctx(cmd), api.IdentityEventsRequest{Events: events})
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(res)
			}
			fmt.Fprintf(g.stdout, "%d events accepted: %d sessions started, %d ended; %d ignored, %d bad\n",
				res.Accepted, res.Started, res.Ended, len(res.Ignored), len(res.Bad))
			for _, b := range res.Bad {
				fmt.Fprintf(g.stdout, "  bad event #%d: %s\n", b.Index, b.Reason)
			}
			for _, b := range res.Ignored {
				fmt.Fprintf(g.stdout, "  ignored event #%d: %s\n", b.Index, b.Reason)
			}
			return nil
		},
	}
}

// splitEvents reads a JSON array of events, or a stream of JSON values
// (one per line, as SIEMs export).
func splitEvents(data []byte) ([]json.RawMessage, error) {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '[' {
		var evs []json.RawMessage
		if err := json.Unmarshal(data, &evs); err != nil {
			return nil, fmt.Errorf("not a JSON array of events: %w", err)
		}
		return evs, nil
	}
	var evs []json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var ev json.RawMessage
		if err := dec.Decode(&ev); err == io.EOF {
			return evs, nil
		} else if err != nil {
			return nil, fmt.Errorf("event #%d: %w", len(evs), err)
		}
		evs = append(evs, ev)
	}
}
