package apiclient

import (
	"context"
	"net/url"

	"github.com/bulkhead/bulkhead/internal/api"
)

// Recommend drafts a policy for a scope from observed flows, and applies
// it when req.Apply.
func (c *Client) Recommend(ctx context.Context, req api.RecommendRequest) (api.RecommendResponse, error) {
	var out api.RecommendResponse
	return out, c.do(ctx, "POST", api.Prefix+"/recommend", req, &out)
}

// DiscoverApps returns the tags discovery proposes for workloads without
// an app or tier, from the flows since (RFC 3339 or a duration such as 7d;
// empty: the manager's default).
func (c *Client) DiscoverApps(ctx context.Context, since string) ([]api.AppProposal, error) {
	var out []api.AppProposal
	path := api.Prefix + "/discover/apps"
	if since != "" {
		path += "?" + url.Values{api.DiscoverSince: {since}}.Encode()
	}
	return out, c.do(ctx, "GET", path, nil, &out)
}

// AcceptApps writes proposed tags into the inventory.
func (c *Client) AcceptApps(ctx context.Context, req api.AcceptAppsRequest) (api.AcceptAppsResponse, error) {
	var out api.AcceptAppsResponse
	return out, c.do(ctx, "POST", api.Prefix+"/discover/apps/accept", req, &out)
}
