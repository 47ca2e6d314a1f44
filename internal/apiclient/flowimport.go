package apiclient

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/bulkhead/bulkhead/internal/api"
)

// ImportFlows sends a flow file of format (api.FlowFormatZeek) as it is
// read from body, without holding it in memory, and returns what the
// manager stored. host names the sensor ("" for the manager's default).
func (c *Client) ImportFlows(ctx context.Context, format, host string, body io.Reader) (api.FlowImportResult, error) {
	var out api.FlowImportResult
	v := url.Values{api.FlowImportFormat: {format}}
	if host != "" {
		v.Set(api.FlowImportHost, host)
	}
	return out, c.postStream(ctx, api.Prefix+"/flows/import?"+v.Encode(), body, "", &out)
}

// postStream POSTs body as it is read (text/plain; encoding, if not "",
// as its Content-Encoding) and decodes the JSON answer into out; an
// answer that is no 2xx is an *Error.
func (c *Client) postStream(ctx context.Context, path string, body io.Reader, encoding string, out any) error {
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+path, body)
	if err != nil {
		return fmt.Errorf("apiclient: POST %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "text/plain")
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("apiclient: POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("apiclient: POST %s: read answer: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, &e.Body) != nil {
			e.Body.Error = strings.TrimSpace(string(data))
		}
		return e
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("apiclient: POST %s: decode answer: %w", path, err)
	}
	return nil
}
