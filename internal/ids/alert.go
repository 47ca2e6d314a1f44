package ids

import (
	"net/netip"
	"strings"
	"time"

	"github.com/bulkhead/bulkhead/internal/ids/applayer"
	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/ids/stream"
)

// Verdict is what the inspector says about a packet.
type Verdict uint8

const (
	VerdictPass Verdict = iota
	VerdictDrop
	VerdictReject
)

func (v Verdict) String() string {
	switch v {
	case VerdictDrop:
		return "drop"
	case VerdictReject:
		return "reject"
	}
	return "pass"
}

// Alert is one rule's match. The inspector allocates a new Alert for each
// (alerts are rare), so OnAlert may keep it.
type Alert struct {
	Time      time.Time
	FlowID    uint64
	Interface string
	// Src and Dst are the packet's (or the transaction's direction's)
	// endpoints; Proto the IP protocol number.
	Src, Dst netip.AddrPort
	Proto    uint8
	// ICMPType and ICMPCode for ICMP packets.
	ICMPType, ICMPCode uint8
	AppProto           rules.Proto
	Dir                stream.Dir
	// Blocked: a drop/reject rule matched inline, Verdict says which.
	Blocked bool
	Verdict Verdict
	Rule    *rules.Rule
	// Application-layer records when the match was on a transaction.
	HTTP *applayer.HTTPInfo
	TLS  *applayer.TLSInfo
	DNS  *applayer.DNSInfo
	SSH  *applayer.SSHInfo
	Flow FlowCounters
	// Payload is the inspected payload (packet, stream window or the
	// transaction's first buffer), at most MaxAlertPayload bytes.
	Payload []byte
	// Bulkhead is filled by the agent and the manager.
	Bulkhead BulkheadInfo
}

// MaxAlertPayload bounds the payload an alert carries.
const MaxAlertPayload = 4096

// FlowCounters are the flow's packets and bytes so far (IP lengths).
type FlowCounters struct {
	PktsToServer, PktsToClient   uint64
	BytesToServer, BytesToClient uint64
	Start                        time.Time
}

// BulkheadInfo is the EVE record's "bulkhead" object: where the alert was
// raised and which workloads it concerns.
type BulkheadInfo struct {
	Host         string `json:"host,omitempty"`
	SrcWorkload  string `json:"src_workload,omitempty"`
	DestWorkload string `json:"dest_workload,omitempty"`
	Interface    string `json:"interface,omitempty"`
	Profile      string `json:"profile,omitempty"`
	Mode         string `json:"mode,omitempty"`
}

// EVE is a Suricata EVE JSON alert record (event_type "alert") with
// Bulkhead's extra "bulkhead" object.
type EVE struct {
	Timestamp        string             `json:"timestamp"`
	FlowID           uint64             `json:"flow_id"`
	InIface          string             `json:"in_iface,omitempty"`
	EventType        string             `json:"event_type"`
	SrcIP            string             `json:"src_ip"`
	SrcPort          uint16             `json:"src_port,omitempty"`
	DestIP           string             `json:"dest_ip"`
	DestPort         uint16             `json:"dest_port,omitempty"`
	Proto            string             `json:"proto"`
	ICMPType         *uint8             `json:"icmp_type,omitempty"`
	ICMPCode         *uint8             `json:"icmp_code,omitempty"`
	AppProto         string             `json:"app_proto,omitempty"`
	Direction        string             `json:"direction,omitempty"`
	Alert            EVEAlert           `json:"alert"`
	HTTP             *applayer.HTTPInfo `json:"http,omitempty"`
	TLS              *applayer.TLSInfo  `json:"tls,omitempty"`
	DNS              *applayer.DNSInfo  `json:"dns,omitempty"`
	SSH              *applayer.SSHInfo  `json:"ssh,omitempty"`
	Flow             EVEFlow            `json:"flow"`
	PayloadPrintable string             `json:"payload_printable,omitempty"`
	Bulkhead         *BulkheadInfo      `json:"bulkhead,omitempty"`
}

// EVEAlert is the record's "alert" object.
type EVEAlert struct {
	Action      string              `json:"action"`
	GID         uint32              `json:"gid"`
	SignatureID uint32              `json:"signature_id"`
	Rev         uint32              `json:"rev"`
	Signature   string              `json:"signature"`
	Category    string              `json:"category"`
	Severity    int                 `json:"severity"`
	Metadata    map[string][]string `json:"metadata,omitempty"`
}

// EVEFlow is the record's "flow" object.
type EVEFlow struct {
	PktsToServer  uint64 `json:"pkts_toserver"`
	PktsToClient  uint64 `json:"pkts_toclient"`
	BytesToServer uint64 `json:"bytes_toserver"`
	BytesToClient uint64 `json:"bytes_toclient"`
	Start         string `json:"start"`
}

// EVETime is Suricata's EVE timestamp layout.
const EVETime = "2006-01-02T15:04:05.000000-0700"

// EVE returns the alert as an EVE record.
func (a *Alert) EVE() EVE {
	ev := EVE{
		Timestamp: a.Time.Format(EVETime),
		FlowID:    a.FlowID,
		InIface:   a.Interface,
		EventType: "alert",
		SrcIP:     a.Src.Addr().String(),
		SrcPort:   a.Src.Port(),
		DestIP:    a.Dst.Addr().String(),
		DestPort:  a.Dst.Port(),
		Proto:     ProtoName(a.Proto),
		AppProto:  AppProtoName(a.AppProto),
		Direction: a.Dir.String(),
		HTTP:      a.HTTP,
		TLS:       a.TLS,
		DNS:       a.DNS,
		SSH:       a.SSH,
		Flow: EVEFlow{
			PktsToServer: a.Flow.PktsToServer, PktsToClient: a.Flow.PktsToClient,
			BytesToServer: a.Flow.BytesToServer, BytesToClient: a.Flow.BytesToClient,
			Start: a.Flow.Start.Format(EVETime),
		},
		PayloadPrintable: printable(a.Payload),
	}
	if a.Proto == protoICMP || a.Proto == protoICMPv6 {
		t, c := a.ICMPType, a.ICMPCode
		ev.ICMPType, ev.ICMPCode = &t, &c
	}
	if r := a.Rule; r != nil {
		action := "allowed"
		if a.Blocked {
			action = "blocked"
		}
		gid := r.GID
		if gid == 0 {
			gid = 1
		}
		ev.Alert = EVEAlert{
			Action: action, GID: gid, SignatureID: r.SID, Rev: r.Rev,
			Signature: r.Msg, Category: rules.ClassDescription(r.Classtype), Severity: severity(r),
			Metadata: r.Metadata,
		}
	}
	if a.Bulkhead != (BulkheadInfo{}) {
		b := a.Bulkhead
		ev.Bulkhead = &b
	}
	return ev
}

func severity(r *rules.Rule) int {
	if r.Priority > 0 {
		return r.Priority
	}
	return 3
}

// printable is Suricata's payload_printable: bytes outside printable ASCII
// (and tab, CR, LF) become '.'.
func printable(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	var sb strings.Builder
	sb.Grow(len(b))
	for _, c := range b {
		if c == '\n' || c == '\r' || c == '\t' || (c >= 0x20 && c < 0x7f) {
			sb.WriteByte(c)
		} else {
			sb.WriteByte('.')
		}
	}
	return sb.String()
}

// ProtoName is the EVE "proto" of an IP protocol number.
func ProtoName(p uint8) string {
	switch p {
	case protoTCP:
		return "TCP"
	case protoUDP:
		return "UDP"
	case protoICMP:
		return "ICMP"
	case protoICMPv6:
		return "IPv6-ICMP"
	}
	return "IP" + itoa(int(p))
}

// AppProtoName is the EVE "app_proto" of an application protocol ("" when
// none was identified).
func AppProtoName(p rules.Proto) string {
	switch p {
	case rules.ProtoHTTP:
		return "http"
	case rules.ProtoTLS:
		return "tls"
	case rules.ProtoDNS:
		return "dns"
	case rules.ProtoSSH:
		return "ssh"
	case rules.ProtoSMTP:
		return "smtp"
	case rules.ProtoFTP:
		return "ftp"
	case rules.ProtoSMB:
		return "smb"
	}
	return ""
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
