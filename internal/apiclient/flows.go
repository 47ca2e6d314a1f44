package apiclient

import (
	"context"
	"net/url"
	"strconv"

	"github.com/bulkhead/bulkhead/internal/api"
)

// FlowQuery filters flow records; empty fields match everything.
type FlowQuery struct {
	From, To string // workload name, IP or CIDR
	Verdict  string
	Kind     string
	Rule     uint32
	Staged   uint32 // staged rule id
	Host     string
	Since    string // RFC 3339 or a duration back from now
	Until    string
	Proto    string
	Port     uint16
	User     string // directory user behind the source
	App      string // AppID the agent's L7 reader saw ("APP_SSH")
	Limit    int
}

func (q FlowQuery) values() url.Values {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set(api.FlowFrom, q.From)
	set(api.FlowTo, q.To)
	set(api.FlowVerdict, q.Verdict)
	set(api.FlowKind, q.Kind)
	set(api.FlowHost, q.Host)
	set(api.FlowSince, q.Since)
	set(api.FlowUntil, q.Until)
	set(api.FlowProto, q.Proto)
	set(api.FlowUser, q.User)
	set(api.FlowApp, q.App)
	if q.Rule != 0 {
		v.Set(api.FlowRule, strconv.FormatUint(uint64(q.Rule), 10))
	}
	if q.Staged != 0 {
		v.Set(api.FlowStaged, strconv.FormatUint(uint64(q.Staged), 10))
	}
	if q.Port != 0 {
		v.Set(api.FlowPort, strconv.Itoa(int(q.Port)))
	}
	if q.Limit > 0 {
		v.Set(api.FlowLimit, strconv.Itoa(q.Limit))
	}
	return v
}

// Flows lists flow records, most recently seen first.
func (c *Client) Flows(ctx context.Context, q FlowQuery) ([]api.Flow, error) {
	var out []api.Flow
	path := api.Prefix + "/flows"
	if v := q.values(); len(v) > 0 {
		path += "?" + v.Encode()
	}
	return out, c.do(ctx, "GET", path, nil, &out)
}
