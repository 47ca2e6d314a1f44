package apiclient

import (
	"context"
	"net/url"
	"strconv"

	"github.com/bulkhead/bulkhead/internal/api"
)

// DirectorySources lists the configured LDAP / Active Directory sources.
func (c *Client) DirectorySources(ctx context.Context) ([]api.DirectorySource, error) {
	var out []api.DirectorySource
	return out, c.do(ctx, "GET", api.Prefix+"/directory/sources", nil, &out)
}

// CreateDirectorySource configures a directory source to sync.
func (c *Client) CreateDirectorySource(ctx context.Context, req api.DirectorySourceRequest) (api.DirectorySource, error) {
	var out api.DirectorySource
	return out, c.do(ctx, "POST", api.Prefix+"/directory/sources", req, &out)
}

// SyncDirectorySource syncs a directory source now.
func (c *Client) SyncDirectorySource(ctx context.Context, name string) (api.DirectorySync, error) {
	var out api.DirectorySync
	return out, c.do(ctx, "POST", api.Prefix+"/directory/sources/"+url.PathEscape(name)+"/sync", nil, &out)
}

// DeleteDirectorySource removes a directory source with its users and
// groups.
func (c *Client) DeleteDirectorySource(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", api.Prefix+"/directory/sources/"+url.PathEscape(name), nil, nil)
}

// DirectoryUsers lists synced users with their groups; group, when set,
// keeps the users in it (nesting resolved).
func (c *Client) DirectoryUsers(ctx context.Context, group string) ([]api.DirectoryUser, error) {
	var out []api.DirectoryUser
	path := api.Prefix + "/directory/users"
	if group != "" {
		path += "?" + url.Values{api.UserGroup: {group}}.Encode()
	}
	return out, c.do(ctx, "GET", path, nil, &out)
}

// DirectoryGroups lists synced groups with their members.
func (c *Client) DirectoryGroups(ctx context.Context) ([]api.DirectoryGroup, error) {
	var out []api.DirectoryGroup
	return out, c.do(ctx, "GET", api.Prefix+"/directory/groups", nil, &out)
}

// IdentityEvents sends login and logoff events.
func (c *Client) IdentityEvents(ctx context.Context, req api.IdentityEventsRequest) (api.IdentityEventsResult, error) {
	var out api.IdentityEventsResult
	return out, c.do(ctx, "POST", api.Prefix+"/identity/events", req, &out)
}

// SessionQuery filters login sessions; empty fields match all.
type SessionQuery struct {
	IP   string
	User string
	Open bool
}

// IdentitySessions lists login sessions, newest first.
func (c *Client) IdentitySessions(ctx context.Context, q SessionQuery) ([]api.IdentitySession, error) {
	var out []api.IdentitySession
	v := url.Values{}
	if q.IP != "" {
		v.Set(api.SessionIP, q.IP)
	}
	if q.User != "" {
		v.Set(api.SessionUser, q.User)
	}
	if q.Open {
		v.Set(api.SessionOpen, "true")
	}
	path := api.Prefix + "/identity/sessions"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	return out, c.do(ctx, "GET", path, nil, &out)
}

// IdentityWho asks who is behind an address and source port (0: any) at a
// time ("" = now; RFC 3339 or a duration back).
func (c *Client) IdentityWho(ctx context.Context, ip string, port uint16, at string) (api.IdentityWho, error) {
	var out api.IdentityWho
	v := url.Values{api.SessionIP: {ip}}
	if port != 0 {
		v.Set(api.WhoPort, strconv.Itoa(int(port)))
	}
	if at != "" {
		v.Set(api.WhoAt, at)
	}
	return out, c.do(ctx, "GET", api.Prefix+"/identity/who?"+v.Encode(), nil, &out)
}
