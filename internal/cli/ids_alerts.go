package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
)

// idsAlertCmds is `bulkhead ids alerts`.
func idsAlertCmds(g *globals) []*cobra.Command {
	var (
		q   apiclient.AlertQuery
		sid uint
	)
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "List IDS alerts: which signature fired on which workload's traffic",
		Long: `List the alerts the agents' intrusion detection raised, newest first.

Each alert is a Suricata EVE JSON record (event_type "alert") with a
"bulkhead" object naming the host that raised it, the workloads at both ends,
the IDS profile and its mode. -o eve prints the records one per line, as
Suricata's eve.json does; -o json and -o yaml print them as a list.
--severity N lists alerts of severity N or worse (1 is the worst).`,
		Example: `  bulkhead ids alerts --since 1h
  bulkhead ids alerts --workload web-1 --severity 2
  bulkhead ids alerts --sid 2024897 -o eve | jq .http`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			eve := g.output == "eve"
			if !eve {
				if err := g.checkOutput(); err != nil {
					return fmt.Errorf("--output %q: want table, yaml, json or eve", g.output)
				}
			}
			if q.Severity < 0 {
				return fmt.Errorf("--severity %d: want 1 (the worst) or more", q.Severity)
			}
			if sid > 1<<32-1 {
				return fmt.Errorf("--sid %d: not a signature id", sid)
			}
			q.SID = uint32(sid)
			c, err := g.client()
			if err != nil {
				return err
			}
			alerts, err := c.IDSAlerts(ctx(cmd), q)
			if err != nil {
				return err
			}
			switch {
			case eve:
				for _, raw := range alerts {
					var line bytes.Buffer
					if err := json.Compact(&line, raw); err != nil {
						return fmt.Errorf("alert from the manager: %w", err)
					}
					line.WriteByte('\n')
					if _, err := g.stdout.Write(line.Bytes()); err != nil {
						return err
					}
				}
				return nil
			case g.output != "table":
				if alerts == nil {
					alerts = []json.RawMessage{}
				}
				return g.printData(alerts)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tSEVERITY\tACTION\tSID\tSIGNATURE\tSRC\tDST\tAPP\tHOST")
			for i, raw := range alerts {
				var a api.EVEAlert
				if err := json.Unmarshal(raw, &a); err != nil {
					return fmt.Errorf("alert %d from the manager: %w", i, err)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n",
					alertTime(a.Timestamp), a.Alert.Severity, dash(a.Alert.Action), a.Alert.SignatureID, dash(a.Alert.Signature),
					alertEnd(a.Bulkhead.SrcWorkload, a.SrcIP, a.SrcPort), alertEnd(a.Bulkhead.DestWorkload, a.DestIP, a.DestPort),
					dash(a.AppProto), dash(a.Bulkhead.Host))
			}
			return tw.Flush()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&q.Since, "since", "", "only alerts after this time (RFC 3339) or this long ago (10m, 24h, 7d)")
	fl.StringVar(&q.Until, "until", "", "only alerts before this time (RFC 3339) or this long ago")
	fl.IntVar(&q.Severity, "severity", 0, "only alerts of this severity or worse (1 is the worst)")
	fl.StringVar(&q.Workload, "workload", "", "only alerts with this workload at either end")
	fl.UintVar(&sid, "sid", 0, "only alerts of this signature id")
	fl.StringVar(&q.Host, "host", "", "only alerts raised by this host's agent")
	fl.IntVar(&q.Limit, "limit", 100, "at most this many alerts")
	return []*cobra.Command{cmd}
}

// alertTime shows an EVE timestamp in local time, or as it came.
func alertTime(ts string) string {
	for _, layout := range []string{"2006-01-02T15:04:05.999999999-0700", time.RFC3339Nano} {
		if t, err := time.Parse(layout, ts); err == nil {
			return t.Local().Format(time.DateTime)
		}
	}
	return dash(ts)
}

// alertEnd is the workload's name, else ip:port.
func alertEnd(workload, ip string, port uint16) string {
	switch {
	case workload != "":
		return workload
	case port != 0:
		return net.JoinHostPort(ip, strconv.Itoa(int(port)))
	}
	return dash(ip)
}
