package cli

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
)

func newFlowsCmd(g *globals) *cobra.Command {
	var q apiclient.FlowQuery
	var rule, port, staged uint
	cmd := &cobra.Command{
		Use:   "flows",
		Short: "List flow records: who talked to whom, how much, and which rule decided",
		Long: `List the flow records the agents reported, most recently seen first.

Each line is a connection (still open, with its totals so far, or ended) or
the denied attempts of one source to one destination port within a few
seconds. --from and --to take a workload name, an IP address or a CIDR.`,
		Example: `  bulkhead flows --since 10m
  bulkhead flows --to db-1 --verdict drop
  bulkhead flows --from 10.0.0.0/24 --proto tcp --port 5432 -o json
  bulkhead flows --from rdsh1 --user alice
  bulkhead flows --app APP_SSH`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			if rule > 1<<32-1 {
				return fmt.Errorf("--rule %d: not a rule id", rule)
			}
			if port > 65535 {
				return fmt.Errorf("--port %d: want 1-65535", port)
			}
			if staged > 1<<32-1 {
				return fmt.Errorf("--staged-rule %d: not a rule id", staged)
			}
			q.Rule, q.Port, q.Staged = uint32(rule), uint16(port), uint32(staged)
			c, err := g.client()
			if err != nil {
				return err
			}
			flows, err := c.Flows(ctx(cmd), q)
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.printData(flows)
			}
			// The USER column only when some source has a user (login
			// sessions known): most data centers have none.
			users := slices.ContainsFunc(flows, func(f api.Flow) bool { return f.User != "" })
			// Likewise APP, TLS and SERVER only when the agents' L7
			// readers inspected some of these connections (an L7 rule
			// concerned them).
			apps := slices.ContainsFunc(flows, func(f api.Flow) bool { return f.App != "" })
			tlsv := slices.ContainsFunc(flows, func(f api.Flow) bool { return f.TLSVersion != "" })
			servers := slices.ContainsFunc(flows, func(f api.Flow) bool { return f.ServerName != "" })
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			header := "TIME"
			if users {
				header += "\tUSER"
			}
			header += "\tSOURCE\tDESTINATION\tPROTO"
			if apps {
				header += "\tAPP"
			}
			if tlsv {
				header += "\tTLS"
			}
			if servers {
				header += "\tSERVER"
			}
			fmt.Fprintln(tw, header+"\tVERDICT\tRULE\tSENT\tRECEIVED\tDURATION")
			for i := range flows {
				f := &flows[i]
				fmt.Fprint(tw, f.Seen.Local().Format(time.DateTime), "\t")
				if users {
					fmt.Fprint(tw, dash(f.User), "\t")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t",
					endpoint(f.SrcWorkload, f.Src, f.SrcPort, f.Kind == "drop" && f.SrcPort == 0),
					endpoint(f.DstWorkload, f.Dst, f.DstPort, false),
					protoColumn(f))
				if apps {
					fmt.Fprint(tw, dash(f.App), "\t")
				}
				if tlsv {
					fmt.Fprint(tw, dash(f.TLSVersion), "\t")
				}
				if servers {
					fmt.Fprint(tw, dash(f.ServerName), "\t")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n",
					f.Verdict, ruleColumn(f),
					traffic(f.SrcBytes, f.SrcPackets), traffic(f.DstBytes, f.DstPackets),
					duration(f))
			}
			return tw.Flush()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&q.From, "from", "", "source: workload name, IP or CIDR")
	fl.StringVar(&q.To, "to", "", "destination: workload name, IP or CIDR")
	fl.StringVar(&q.Verdict, "verdict", "", "allow, drop or reject")
	fl.StringVar(&q.Kind, "kind", "", "update (open connections), end (closed) or drop (denied attempts)")
	fl.UintVar(&rule, "rule", 0, "only flows decided by this rule id")
	fl.UintVar(&staged, "staged-rule", 0, "only flows this staged rule would have decided (what it would change if enforced)")
	fl.StringVar(&q.Host, "host", "", "only flows reported by this host")
	fl.StringVar(&q.Since, "since", "", "only flows seen after this time (RFC 3339) or this long ago (10m, 24h)")
	fl.StringVar(&q.Until, "until", "", "only flows started before this time (RFC 3339) or this long ago")
	fl.StringVar(&q.Proto, "proto", "", "tcp, udp, icmp, icmpv6, sctp or a protocol number")
	fl.UintVar(&port, "port", 0, "destination port")
	fl.StringVar(&q.User, "user", "", "only flows of this directory user (from login sessions)")
	fl.StringVar(&q.App, "app", "", "only flows the agent's L7 reader identified as this AppID (APP_SSH)")
	fl.IntVar(&q.Limit, "limit", 100, "at most this many flows")
	return cmd
}

// endpoint renders "web-1 10.0.0.1:443"; anyPort shows a drop record's
// several source ports as *.
func endpoint(workload, ip string, port uint16, anyPort bool) string {
	s := ip
	switch {
	case anyPort:
		s = net.JoinHostPort(ip, "*")
	case port != 0:
		s = net.JoinHostPort(ip, strconv.Itoa(int(port)))
	}
	if workload != "" {
		return workload + " " + s
	}
	return s
}

func protoColumn(f *api.Flow) string {
	if f.ICMPType != nil {
		code := uint8(0)
		if f.ICMPCode != nil {
			code = *f.ICMPCode
		}
		return fmt.Sprintf("%s %d/%d", f.Proto, *f.ICMPType, code)
	}
	return f.Proto
}

// traffic renders bytes and packets: "1.2MB/950".
func traffic(bytes, packets uint64) string {
	if bytes == 0 && packets == 0 {
		return "-"
	}
	return humanBytes(bytes) + "/" + strconv.FormatUint(packets, 10)
}

func humanBytes(n uint64) string {
	const unit = 1000
	if n < unit {
		return strconv.FormatUint(n, 10) + "B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// duration is how long the flow lasted; an open one ends in "+".
func duration(f *api.Flow) string {
	if f.End != nil {
		return roundDuration(f.End.Sub(f.Start))
	}
	return roundDuration(f.Seen.Sub(f.Start)) + "+"
}

func roundDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// ruleColumn is the deciding rule, and the staged rule that would decide
// instead ("12 (staged 40)").
func ruleColumn(f *api.Flow) string {
	if f.StagedRuleID != 0 {
		return fmt.Sprintf("%d (staged %d)", f.RuleID, f.StagedRuleID)
	}
	return strconv.FormatUint(uint64(f.RuleID), 10)
}
