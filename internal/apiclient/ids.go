package apiclient

import (
	"context"
	"io"
	"net/url"
	"strconv"

	"github.com/bulkhead/bulkhead/internal/api"
)

// ImportSignatureSet sends a rule file (Suricata language) as the next
// version of the signature set name, streamed from body; gzipped says the
// body is gzip'd (the manager also recognizes gzip by its magic bytes).
// A file of which no rule loads is refused with an *Error.
func (c *Client) ImportSignatureSet(ctx context.Context, name string, body io.Reader, gzipped bool) (api.IDSImportResult, error) {
	var out api.IDSImportResult
	encoding := ""
	if gzipped {
		encoding = "gzip"
	}
	return out, c.postStream(ctx, api.Prefix+"/ids/signature-sets/"+url.PathEscape(name), body, encoding, &out)
}

// SignatureSet returns one set's newest version with every rule that did
// not load.
func (c *Client) SignatureSet(ctx context.Context, name string) (api.IDSImportResult, error) {
	var out api.IDSImportResult
	return out, c.do(ctx, "GET", api.Prefix+"/ids/signature-sets/"+url.PathEscape(name), nil, &out)
}

// SignatureSets lists the imported signature sets.
func (c *Client) SignatureSets(ctx context.Context) ([]api.IDSSignatureSet, error) {
	var out []api.IDSSignatureSet
	return out, c.do(ctx, "GET", api.Prefix+"/ids/signature-sets", nil, &out)
}

// DeleteSignatureSet deletes a signature set.
func (c *Client) DeleteSignatureSet(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", api.Prefix+"/ids/signature-sets/"+url.PathEscape(name), nil, nil)
}

// SignatureQuery selects signatures; zero fields do not filter. With a
// Workload, the answer is the selection for that workload.
type SignatureQuery struct {
	Set      string
	SID      uint32
	Workload string
}

// Signatures lists signatures, or those inspecting a workload.
func (c *Client) Signatures(ctx context.Context, q SignatureQuery) (api.IDSSignatures, error) {
	v := url.Values{}
	if q.Set != "" {
		v.Set(api.IDSSignaturesSet, q.Set)
	}
	if q.SID != 0 {
		v.Set(api.IDSSignaturesSID, strconv.FormatUint(uint64(q.SID), 10))
	}
	if q.Workload != "" {
		v.Set(api.IDSSignaturesWorkload, q.Workload)
	}
	path := api.Prefix + "/ids/signatures"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out api.IDSSignatures
	return out, c.do(ctx, "GET", path, nil, &out)
}
