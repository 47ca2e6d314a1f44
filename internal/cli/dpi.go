package cli

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulkhead/bulkhead/internal/dpi"
)

func newDPICmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dpi",
		Short: "Deep packet inspection: what the agent's DPI engine sees in traffic",
	}
	cmd.AddCommand(newDPIReadCmd(g))
	return cmd
}

// dpiFlow is one flow of `bulkhead dpi read`, as JSON/YAML.
type dpiFlow struct {
	Proto        string    `json:"proto"`
	Client       string    `json:"client"`
	Server       string    `json:"server"`
	App          string    `json:"app"`
	TLSVersion   string    `json:"tlsVersion,omitempty"`
	TLSOffered   string    `json:"tlsOffered,omitempty"`
	TLSCipher    string    `json:"tlsCipher,omitempty"`
	Host         string    `json:"host,omitempty"`
	ALPN         string    `json:"alpn,omitempty"`
	Method       string    `json:"method,omitempty"`
	Path         string    `json:"path,omitempty"`
	Detail       string    `json:"detail,omitempty"`
	JA3          string    `json:"ja3,omitempty"`
	JA3String    string    `json:"ja3String,omitempty"`
	JA4          string    `json:"ja4,omitempty"`
	Packets      uint64    `json:"packets"`
	Bytes        uint64    `json:"bytes"`
	PayloadBytes uint64    `json:"payloadBytes"`
	First        time.Time `json:"first"`
	Last         time.Time `json:"last"`
}

func newDPIReadCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "read FILE",
		Short: "Identify the application of every flow in a pcap or pcapng capture",
		Long: `Read a capture (pcap or pcapng: Ethernet, Linux cooked, raw IP; IPv4/IPv6;
TCP/UDP) and run the DPI engine on every flow, as an agent would on live
traffic: one line per flow with the application (the APP_* name a
ContextProfile uses), the negotiated TLS version, the SNI, HTTP Host or DNS
name, and its packets and bytes. The client is the side that sent the SYN
(or the first packet). -o json adds ALPN, the HTTP request, JA3 and JA4.`,
		Example: `  tcpdump -i eth0 -w web.pcap -c 2000 port 443
  bulkhead dpi read web.pcap
  bulkhead dpi read web.pcap -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			capture, err := dpi.ReadCapture(f)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if capture.Truncated {
				fmt.Fprintf(g.stderr, "warning: %s ends inside a packet; read %d packets\n", args[0], capture.Packets)
			}
			if capture.Packets > 0 && len(capture.Flows) == 0 {
				return errors.New(args[0] + ": no TCP or UDP packets over IP in the capture")
			}
			flows := make([]dpiFlow, len(capture.Flows))
			for i := range capture.Flows {
				flows[i] = toDPIFlow(&capture.Flows[i])
			}
			if g.output != "table" {
				return g.printData(flows)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PROTO\tCLIENT\tSERVER\tAPP\tTLS\tHOST\tPACKETS\tBYTES\tDETAIL")
			for _, f := range flows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n",
					f.Proto, f.Client, f.Server, f.App, dash(f.TLSVersion), dash(f.Host),
					f.Packets, humanBytes(f.Bytes), detailColumn(f))
			}
			return tw.Flush()
		},
	}
}

func toDPIFlow(c *dpi.CaptureFlow) dpiFlow {
	r := &c.Result
	f := dpiFlow{
		Proto:  "tcp",
		Client: c.Client.String(), Server: c.Server.String(),
		App:          r.App.String(),
		TLSVersion:   r.TLSVersionName(),
		TLSOffered:   dpi.VersionName(r.TLSOffered),
		Host:         string(r.Host()),
		ALPN:         string(r.ALPN()),
		Method:       string(r.Method()),
		Path:         string(r.Path()),
		Detail:       string(r.Detail()),
		JA3String:    c.JA3,
		JA4:          string(r.JA4()),
		Packets:      c.Packets,
		Bytes:        c.Bytes,
		PayloadBytes: c.Payload,
		First:        c.First.UTC(),
		Last:         c.Last.UTC(),
	}
	if c.Proto == dpi.UDP {
		f.Proto = "udp"
	}
	if r.TLSCipher != 0 {
		f.TLSCipher = "0x" + strconv.FormatUint(uint64(r.TLSCipher)|0x10000, 16)[1:]
	}
	if r.JA3 != [16]byte{} {
		f.JA3 = hex.EncodeToString(r.JA3[:])
	}
	return f
}

// detailColumn is the HTTP request or the protocol's own detail.
func detailColumn(f dpiFlow) string {
	switch {
	case f.Method != "":
		return f.Method + " " + f.Path
	case f.ALPN != "":
		return "alpn " + f.ALPN
	}
	return dash(f.Detail)
}
