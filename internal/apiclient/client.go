// Package apiclient is the typed client of the manager's REST API; the CLI
// (and later the console's tests) talk to the manager only through it.
package apiclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// Client calls one manager with one token.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client for server (https://host:port) trusting only caPEM
// (the manager's CA) when given, else the system roots.
func New(server, token string, caPEM []byte) (*Client, error) {
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("apiclient: server %q: want a URL like https://127.0.0.1:8443", server)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("apiclient: server %q: the manager only speaks HTTPS", server)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(caPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("apiclient: CA file holds no PEM certificate")
		}
		tc.RootCAs = pool
	}
	return &Client{
		base:  strings.TrimRight(u.String(), "/"),
		token: token,
		http:  &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{TLSClientConfig: tc, Proxy: nil}},
	}, nil
}

// Error is a non-2xx answer from the manager.
type Error struct {
	Status int
	Body   api.Error
}

func (e *Error) Error() string {
	if e.Body.Error != "" {
		return e.Body.Error
	}
	return fmt.Sprintf("manager answered %d %s", e.Status, http.StatusText(e.Status))
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("apiclient: encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("apiclient: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("apiclient: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("apiclient: %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, &e.Body) != nil {
			e.Body.Error = strings.TrimSpace(string(data))
		}
		return e
	}
	if out == nil || len(data) == 0 {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("apiclient: %s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// WhoAmI returns the caller's token name and role.
func (c *Client) WhoAmI(ctx context.Context) (api.WhoAmI, error) {
	var out api.WhoAmI
	return out, c.do(ctx, "GET", api.Prefix+"/whoami", nil, &out)
}

// Apply creates or updates resources as one revision.
func (c *Client) Apply(ctx context.Context, req api.ApplyRequest) (api.ApplyResponse, error) {
	var out api.ApplyResponse
	return out, c.do(ctx, "POST", api.Prefix+"/apply", req, &out)
}

func revQuery(rev int64) string {
	if rev == 0 {
		return ""
	}
	return "?revision=" + strconv.FormatInt(rev, 10)
}

// List returns the resources of a kind, as JSON objects, at a revision (0 =
// latest).
func (c *Client) List(ctx context.Context, kind policy.Kind, rev int64) ([]json.RawMessage, error) {
	var out []json.RawMessage
	return out, c.do(ctx, "GET", api.Prefix+"/resources/"+url.PathEscape(string(kind))+revQuery(rev), nil, &out)
}

// Get returns one resource as a JSON object.
func (c *Client) Get(ctx context.Context, kind policy.Kind, name string, rev int64) (json.RawMessage, error) {
	var out json.RawMessage
	return out, c.do(ctx, "GET", api.Prefix+"/resources/"+url.PathEscape(string(kind))+"/"+url.PathEscape(name)+revQuery(rev), nil, &out)
}

// Delete removes a resource as a new revision.
func (c *Client) Delete(ctx context.Context, kind policy.Kind, name string) (api.DeleteResponse, error) {
	var out api.DeleteResponse
	return out, c.do(ctx, "DELETE", api.Prefix+"/resources/"+url.PathEscape(string(kind))+"/"+url.PathEscape(name), nil, &out)
}

// Revisions lists published revisions, newest first.
func (c *Client) Revisions(ctx context.Context, limit int) ([]api.Revision, error) {
	var out []api.Revision
	return out, c.do(ctx, "GET", api.Prefix+"/revisions?limit="+strconv.Itoa(limit), nil, &out)
}

// Revision returns one revision with its whole policy.
func (c *Client) Revision(ctx context.Context, n int64) (api.RevisionDetail, error) {
	var out api.RevisionDetail
	return out, c.do(ctx, "GET", api.Prefix+"/revisions/"+strconv.FormatInt(n, 10), nil, &out)
}

// Diff lists the changes from revision from to revision to.
func (c *Client) Diff(ctx context.Context, from, to int64) (api.DiffResponse, error) {
	var out api.DiffResponse
	return out, c.do(ctx, "GET", fmt.Sprintf("%s/revisions/%d/diff?from=%d", api.Prefix, to, from), nil, &out)
}

// Rollback publishes revision n's policy as a new revision.
func (c *Client) Rollback(ctx context.Context, n int64) (api.ApplyResponse, error) {
	var out api.ApplyResponse
	return out, c.do(ctx, "POST", api.Prefix+"/rollback", api.RollbackRequest{Revision: n}, &out)
}

// Eval decides a flow.
func (c *Client) Eval(ctx context.Context, req api.EvalRequest) (api.EvalResponse, error) {
	var out api.EvalResponse
	return out, c.do(ctx, "POST", api.Prefix+"/eval", req, &out)
}

// AuditQuery filters the audit log.
type AuditQuery struct {
	Since  string // RFC 3339 or a duration back from now
	Actor  string
	Object string
	Limit  int
}

// Audit reads the audit log, newest first.
func (c *Client) Audit(ctx context.Context, q AuditQuery) ([]api.AuditEntry, error) {
	v := url.Values{}
	if q.Since != "" {
		v.Set("since", q.Since)
	}
	if q.Actor != "" {
		v.Set("actor", q.Actor)
	}
	if q.Object != "" {
		v.Set("object", q.Object)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out []api.AuditEntry
	return out, c.do(ctx, "GET", api.Prefix+"/audit?"+v.Encode(), nil, &out)
}

// Tokens lists API tokens (admin only).
func (c *Client) Tokens(ctx context.Context) ([]api.Token, error) {
	var out []api.Token
	return out, c.do(ctx, "GET", api.Prefix+"/tokens", nil, &out)
}

// CreateToken makes an API token; its secret is in the answer only.
func (c *Client) CreateToken(ctx context.Context, req api.TokenRequest) (api.TokenCreated, error) {
	var out api.TokenCreated
	return out, c.do(ctx, "POST", api.Prefix+"/tokens", req, &out)
}

// DeleteToken revokes an API token.
func (c *Client) DeleteToken(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", api.Prefix+"/tokens/"+url.PathEscape(id), nil, nil)
}

// Raw performs a GET and returns the body as is (for /metrics, openapi).
func (c *Client) Raw(ctx context.Context, path string) ([]byte, error) {
	var out []byte
	return out, c.do(ctx, "GET", path, nil, &out)
}
