package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/ids"
	"github.com/bulkhead/bulkhead/internal/ids/rules"
)

// idsReadCmds is `bulkhead ids read`.
func idsReadCmds(g *globals) []*cobra.Command {
	var ruleFiles []string
	var varsFile string
	cmd := &cobra.Command{
		Use:   "read --rules FILE.rules[,FILE2.rules] [--vars FILE] CAPTURE",
		Short: "Run signatures over a pcap or pcapng capture and print the alerts as EVE JSON",
		Long: `Read Suricata/Snort rule files, compile them as an agent would, and run
them over a capture (pcap or pcapng: Ethernet, Linux cooked, raw IP;
IPv4/IPv6; TCP reassembled, UDP, ICMP) in detect mode, like
"suricata -r": one EVE JSON alert record per line on stdout (-o eve, the
default), or a table (-o table) or a JSON array (-o json).

Rules the engine cannot use are reported on stderr ("sid N: reason") and
the others load. --vars sets address and port variables ($HOME_NET,
$HTTP_PORTS, ...) from suricata.yaml's vars: shape or "NAME VALUE" lines.
A summary (packets, flows, alerts, rules loaded/skipped) goes to stderr.`,
		Example: `  bulkhead ids read --rules emerging-web.rules web.pcap > eve.json
  bulkhead ids read --rules local.rules,et.rules --vars lab.yaml -o table lab.pcap`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format := "eve"
			if cmd.Flags().Changed("output") {
				format = g.output
			}
			switch format {
			case "eve", "table", "json":
			default:
				return fmt.Errorf("--output %q: want eve, table or json", format)
			}
			if len(ruleFiles) == 0 {
				return errors.New("--rules: name at least one rule file")
			}
			vars := rules.DefaultVars()
			if varsFile != "" {
				f, err := os.Open(varsFile)
				if err != nil {
					return fmt.Errorf("--vars: %w", err)
				}
				vars, err = rules.ReadVars(f, varsFile)
				f.Close()
				if err != nil {
					return fmt.Errorf("--vars: %w", err)
				}
			}
			var all []*rules.Rule
			var problems []rules.Problem
			for _, name := range ruleFiles {
				f, err := os.Open(name)
				if err != nil {
					return fmt.Errorf("--rules: %w", err)
				}
				rs, probs := rules.Read(f, name, vars)
				f.Close()
				all = append(all, rs...)
				problems = append(problems, probs...)
			}
			engine, probs := ids.Compile(all)
			problems = append(problems, probs...)
			for _, p := range problems {
				where := p.File
				if p.Line > 0 {
					where = fmt.Sprintf("%s:%d", p.File, p.Line)
				}
				if p.SID != 0 {
					fmt.Fprintf(g.stderr, "%s: sid %d: %s\n", where, p.SID, p.Reason)
				} else {
					fmt.Fprintf(g.stderr, "%s: %s\n", where, p.Reason)
				}
			}

			var alerts []ids.EVE
			enc := json.NewEncoder(g.stdout)
			var writeErr error
			st, err := ids.ReadCapture(args[0], engine, func(a *ids.Alert) {
				ev := a.EVE()
				if format != "eve" {
					alerts = append(alerts, ev)
					return
				}
				if writeErr == nil {
					writeErr = enc.Encode(ev)
				}
			})
			if err != nil {
				return err
			}
			if writeErr != nil {
				return writeErr
			}
			es := engine.Stats()
			fmt.Fprintf(g.stderr, "%d rules loaded, %d skipped; %d packets, %d flows, %d alerts\n",
				es.Rules, len(problems), st.Packets, st.Flows, st.Alerts)
			if st.Truncated {
				fmt.Fprintf(g.stderr, "warning: %s ends inside a packet; read %d packets\n", args[0], st.Packets)
			}
			switch format {
			case "json":
				if alerts == nil {
					alerts = []ids.EVE{}
				}
				b, err := json.MarshalIndent(alerts, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(g.stdout, "%s\n", b)
				return err
			case "table":
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tACTION\tSID\tSEVERITY\tPROTO\tSOURCE\tDESTINATION\tSIGNATURE")
				for _, a := range alerts {
					fmt.Fprintf(tw, "%s\t%s\t%d:%d:%d\t%d\t%s\t%s\t%s\t%s\n",
						a.Timestamp, a.Alert.Action, a.Alert.GID, a.Alert.SignatureID, a.Alert.Rev,
						a.Alert.Severity, eveProto(a), eveEndpoint(a.SrcIP, a.SrcPort), eveEndpoint(a.DestIP, a.DestPort), a.Alert.Signature)
				}
				return tw.Flush()
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&ruleFiles, "rules", nil, "rule files (comma-separated or repeated)")
	cmd.Flags().StringVar(&varsFile, "vars", "", "address and port variables (suricata.yaml vars: or NAME VALUE lines)")
	return []*cobra.Command{cmd}
}

func eveProto(a ids.EVE) string {
	if a.AppProto != "" {
		return strings.ToLower(a.Proto) + "/" + a.AppProto
	}
	return strings.ToLower(a.Proto)
}

func eveEndpoint(ip string, port uint16) string {
	if port == 0 {
		return ip
	}
	if strings.Contains(ip, ":") {
		return fmt.Sprintf("[%s]:%d", ip, port)
	}
	return fmt.Sprintf("%s:%d", ip, port)
}
