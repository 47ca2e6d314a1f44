package apiclient

import (
	"context"
	"net/url"
	"strconv"

	"github.com/bulkhead/bulkhead/internal/api"
)

// AnalysisQuery selects what the map and compliance read; empty fields
// take the manager's defaults (level app, every stored flow, the latest
// revision).
type AnalysisQuery struct {
	Level string // env, app, tier, workload
	Since string // RFC 3339 or a duration back from now ("24h", "7d")
	Until string
	// Scope is a tag expression one end of an edge must satisfy (map).
	Scope string
	// Revision is the revision compliance is checked against (0: latest).
	Revision int64
}

func (q AnalysisQuery) path(route string) string {
	v := url.Values{}
	for k, val := range map[string]string{
		api.AnalysisLevel: q.Level, api.AnalysisSince: q.Since, api.AnalysisUntil: q.Until, api.AnalysisScope: q.Scope,
	} {
		if val != "" {
			v.Set(k, val)
		}
	}
	if q.Revision != 0 {
		v.Set(api.AnalysisRevision, strconv.FormatInt(q.Revision, 10))
	}
	p := api.Prefix + route
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	return p
}

// Map returns the application map at a level.
func (c *Client) Map(ctx context.Context, q AnalysisQuery) (api.MapResponse, error) {
	var out api.MapResponse
	return out, c.do(ctx, "GET", q.path("/map"), nil, &out)
}

// Compliance classifies the window's flows against a revision.
func (c *Client) Compliance(ctx context.Context, q AnalysisQuery) (api.ComplianceResponse, error) {
	var out api.ComplianceResponse
	return out, c.do(ctx, "GET", q.path("/compliance"), nil, &out)
}

// WhatIf replays stored flows against a draft or a revision.
func (c *Client) WhatIf(ctx context.Context, req api.WhatIfRequest) (api.WhatIfResponse, error) {
	var out api.WhatIfResponse
	return out, c.do(ctx, "POST", api.Prefix+"/whatif", req, &out)
}
