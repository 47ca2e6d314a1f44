package apiclient

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"

	"github.com/bulkhead/bulkhead/internal/api"
)

// AlertQuery filters IDS alerts; empty fields match everything.
type AlertQuery struct {
	Since, Until string // RFC 3339, or a duration back from now ("1h", "7d")
	// Severity keeps alerts of this severity or worse (1 is the worst).
	Severity int
	Workload string // at either end
	SID      uint32
	Host     string
	Limit    int
}

func (q AlertQuery) values() url.Values {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set(api.AlertSince, q.Since)
	set(api.AlertUntil, q.Until)
	set(api.AlertWorkload, q.Workload)
	set(api.AlertHost, q.Host)
	if q.Severity != 0 {
		v.Set(api.AlertSeverity, strconv.Itoa(q.Severity))
	}
	if q.SID != 0 {
		v.Set(api.AlertSID, strconv.FormatUint(uint64(q.SID), 10))
	}
	if q.Limit > 0 {
		v.Set(api.AlertLimit, strconv.Itoa(q.Limit))
	}
	return v
}

// IDSAlerts lists IDS alerts, newest first, each a Suricata EVE JSON
// record as the manager stored it.
func (c *Client) IDSAlerts(ctx context.Context, q AlertQuery) ([]json.RawMessage, error) {
	var out []json.RawMessage
	path := api.IDSAlertsPath
	if v := q.values(); len(v) > 0 {
		path += "?" + v.Encode()
	}
	return out, c.do(ctx, "GET", path, nil, &out)
}
