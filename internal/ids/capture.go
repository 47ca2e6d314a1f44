package ids

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/bulkhead/bulkhead/internal/dpi"
)

// CaptureStats is what ReadCapture saw.
type CaptureStats struct {
	// Packets is every frame read; Skipped those without an IP packet
	// (another link type or ethertype); Invalid IP packets that did not
	// decode.
	Packets, Skipped, Invalid int
	Flows                     int
	Alerts                    int
	// Truncated says the file ended inside a packet; what came before
	// was inspected.
	Truncated bool
	First     time.Time
	Last      time.Time
}

// ReadCapture runs engine e over a pcap or pcapng capture (Ethernet,
// 802.1Q, Linux SLL/SLL2, raw IP, loopback), as `suricata -r` does: the
// packets in capture order with the capture's timestamps, in detect mode
// (no verdicts), every alert to onAlert in order. At the end every flow
// is closed, so that transactions cut short by the capture's end are
// inspected.
func ReadCapture(path string, e *Engine, onAlert func(*Alert)) (CaptureStats, error) {
	fh, err := os.Open(path)
	if err != nil {
		return CaptureStats{}, fmt.Errorf("ids: read capture: %w", err)
	}
	defer fh.Close()
	st, err := readCapture(fh, e, onAlert)
	if err != nil {
		return st, fmt.Errorf("ids: read capture %s: %w", path, err)
	}
	return st, nil
}

func readCapture(r io.Reader, e *Engine, onAlert func(*Alert)) (CaptureStats, error) {
	var st CaptureStats
	pr, err := dpi.NewPacketReader(r)
	if err != nil {
		return st, err
	}
	insp := NewInspector(InspectorConfig{OnAlert: func(a *Alert) {
		st.Alerts++
		if onAlert != nil {
			onAlert(a)
		}
	}})
	var last time.Time
	for {
		pkt, ts, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			st.Packets, st.Skipped = pr.Packets, pr.Skipped
			return st, err
		}
		if st.First.IsZero() {
			st.First = ts
		}
		last = ts
		insp.Packet(ts, pkt, e, false)
	}
	insp.CloseAll(last, e)
	s := insp.Stats()
	st.Packets, st.Skipped, st.Truncated = pr.Packets, pr.Skipped, pr.Truncated
	st.Invalid = int(s.Invalid)
	st.Flows = int(s.Flows)
	st.Last = last
	return st, nil
}
