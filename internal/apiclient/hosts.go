package apiclient

import (
	"context"
	"net/url"

	"github.com/bulkhead/bulkhead/internal/api"
)

// CreateBootstrapToken makes a one-time agent enrollment token; its secret
// is in the answer only.
func (c *Client) CreateBootstrapToken(ctx context.Context, req api.BootstrapTokenRequest) (api.BootstrapTokenCreated, error) {
	var out api.BootstrapTokenCreated
	return out, c.do(ctx, "POST", api.Prefix+"/bootstrap-tokens", req, &out)
}

// Hosts lists the enrolled agent hosts.
func (c *Client) Hosts(ctx context.Context) ([]api.Host, error) {
	var out []api.Host
	return out, c.do(ctx, "GET", api.Prefix+"/hosts", nil, &out)
}

// RevokeHost revokes a host's agent certificate.
func (c *Client) RevokeHost(ctx context.Context, name string) error {
	return c.do(ctx, "POST", api.Prefix+"/hosts/"+url.PathEscape(name)+"/revoke", nil, nil)
}
