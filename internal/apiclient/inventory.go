package apiclient

import (
	"context"
	"net/url"

	"github.com/bulkhead/bulkhead/internal/api"
)

// ImportCMDB sends a CMDB export to be merged into the inventory.
func (c *Client) ImportCMDB(ctx context.Context, req api.CMDBImportRequest) (api.InventoryResult, error) {
	var out api.InventoryResult
	return out, c.do(ctx, "POST", api.Prefix+"/import/cmdb", req, &out)
}

// Sources lists configured sources and imported ones.
func (c *Client) Sources(ctx context.Context) ([]api.Source, error) {
	var out []api.Source
	return out, c.do(ctx, "GET", api.Prefix+"/sources", nil, &out)
}

// CreateSource configures a source to sync.
func (c *Client) CreateSource(ctx context.Context, req api.SourceRequest) (api.Source, error) {
	var out api.Source
	return out, c.do(ctx, "POST", api.Prefix+"/sources", req, &out)
}

// DeleteSource removes a source and its facts.
func (c *Client) DeleteSource(ctx context.Context, name string) (api.InventoryResult, error) {
	var out api.InventoryResult
	return out, c.do(ctx, "DELETE", api.Prefix+"/sources/"+url.PathEscape(name), nil, &out)
}

// SyncSource syncs a configured source now.
func (c *Client) SyncSource(ctx context.Context, name string) (api.InventoryResult, error) {
	var out api.InventoryResult
	return out, c.do(ctx, "POST", api.Prefix+"/sources/"+url.PathEscape(name)+"/sync", nil, &out)
}

// WorkloadFacts returns every fact about a workload.
func (c *Client) WorkloadFacts(ctx context.Context, name string) (api.WorkloadFacts, error) {
	var out api.WorkloadFacts
	return out, c.do(ctx, "GET", api.Prefix+"/workloads/"+url.PathEscape(name)+"/facts", nil, &out)
}

// InventoryConflicts lists the facts sources disagree on.
func (c *Client) InventoryConflicts(ctx context.Context) ([]api.Conflict, error) {
	var out []api.Conflict
	return out, c.do(ctx, "GET", api.Prefix+"/inventory/conflicts", nil, &out)
}
