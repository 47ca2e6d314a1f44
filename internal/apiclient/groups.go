package apiclient

import (
	"context"
	"net/url"
	"strconv"

	"github.com/bulkhead/bulkhead/internal/api"
)

// GroupMembers resolves a group's members in revision (0: the latest).
func (c *Client) GroupMembers(ctx context.Context, group string, revision int64) (api.GroupMembers, error) {
	var out api.GroupMembers
	path := api.Prefix + "/groups/" + url.PathEscape(group) + "/members"
	if revision != 0 {
		path += "?" + api.GroupMembersRevision + "=" + strconv.FormatInt(revision, 10)
	}
	return out, c.do(ctx, "GET", path, nil, &out)
}
