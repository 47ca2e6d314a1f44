package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/console"
	"github.com/bulkhead/bulkhead/internal/store"
)

// route is one API endpoint. The table of routes is the single source for
// the mux, the OpenAPI document and the auth tests, so no route can be added
// without a role.
type route struct {
	method  string
	path    string // Go 1.22 ServeMux pattern, e.g. /api/v1/resources/{kind}
	role    string // minimum role; "" means no token needed
	summary string
	request any // zero value of the request body type, for OpenAPI
	reply   any // zero value of the response body type, for OpenAPI
	handle  func(w http.ResponseWriter, r *http.Request) error
}

func (s *Server) buildRoutes() []route {
	rs := s.coreRoutes()
	// Each capability keeps its routes next to its handlers.
	rs = append(rs, s.inventoryRoutes()...)  // inventory.go: CMDB import, vCenter sources, facts
	rs = append(rs, s.analysisRoutes()...)   // analysis.go: map, compliance, what-if
	rs = append(rs, s.discoveryRoutes()...)  // discovery.go: recommendations, app discovery
	rs = append(rs, s.flowImportRoutes()...) // flowimport.go: Zeek and other flow imports
	rs = append(rs, s.groupRoutes()...)      // groups.go: live group membership
	rs = append(rs, s.identityRoutes()...)   // identity.go: directory sources, users, groups, login sessions
	rs = append(rs, s.idsAlertRoutes()...)   // ids_alerts.go: IDS alerts
	rs = append(rs, s.idsRoutes()...)        // ids.go: IDS signature sets and selection
	return rs
}

func (s *Server) coreRoutes() []route {
	p := api.Prefix
	return []route{
		{method: "GET", path: "/healthz", summary: "Liveness check", handle: s.handleHealth},
		{method: "GET", path: "/metrics", role: api.RoleAuditor, summary: "Prometheus metrics", handle: s.handleMetrics},
		{method: "GET", path: p + "/openapi.json", role: api.RoleAuditor, summary: "This API's OpenAPI document", handle: s.handleOpenAPI},
		{method: "GET", path: p + "/whoami", role: api.RoleAuditor, summary: "The caller's token name and role", reply: api.WhoAmI{}, handle: s.handleWhoAmI},
		{method: "POST", path: p + "/apply", role: api.RoleOperator, summary: "Create or update resources as one revision", request: api.ApplyRequest{}, reply: api.ApplyResponse{}, handle: s.handleApply},
		{method: "GET", path: p + "/resources/{kind}", role: api.RoleAuditor, summary: "List resources of a kind (?revision=N)", reply: []json.RawMessage{}, handle: s.handleList},
		{method: "GET", path: p + "/resources/{kind}/{name}", role: api.RoleAuditor, summary: "One resource (?revision=N)", reply: json.RawMessage{}, handle: s.handleGet},
		{method: "DELETE", path: p + "/resources/{kind}/{name}", role: api.RoleOperator, summary: "Delete a resource as a new revision", reply: api.DeleteResponse{}, handle: s.handleDelete},
		{method: "GET", path: p + "/revisions", role: api.RoleAuditor, summary: "Published revisions, newest first", reply: []api.Revision{}, handle: s.handleRevisions},
		{method: "GET", path: p + "/revisions/{number}", role: api.RoleAuditor, summary: "One revision with its whole policy", reply: api.RevisionDetail{}, handle: s.handleRevision},
		{method: "GET", path: p + "/revisions/{number}/diff", role: api.RoleAuditor, summary: "Changes from ?from=N (default: the previous revision) to this one", reply: api.DiffResponse{}, handle: s.handleRevisionDiff},
		{method: "POST", path: p + "/rollback", role: api.RoleOperator, summary: "Publish an earlier revision's policy as a new revision", request: api.RollbackRequest{}, reply: api.ApplyResponse{}, handle: s.handleRollback},
		{method: "POST", path: p + "/eval", role: api.RoleAuditor, summary: "Decide a flow: verdict and the rule that decided it", request: api.EvalRequest{}, reply: api.EvalResponse{}, handle: s.handleEval},
		{method: "GET", path: p + "/flows", role: api.RoleAuditor, summary: "Flow records, most recently seen first (?from=&to=&verdict=&kind=&rule=&host=&since=&until=&proto=&port=&limit=)", reply: []api.Flow{}, handle: s.handleFlows},
		{method: "GET", path: p + "/audit", role: api.RoleAuditor, summary: "Audit log (?since=RFC3339|duration&actor=&object=&limit=)", reply: []api.AuditEntry{}, handle: s.handleAudit},
		{method: "POST", path: p + "/bootstrap-tokens", role: api.RoleOperator, summary: "Create a one-time token that enrolls an agent host", request: api.BootstrapTokenRequest{}, reply: api.BootstrapTokenCreated{}, handle: s.handleCreateBootstrapToken},
		{method: "GET", path: p + "/hosts", role: api.RoleAuditor, summary: "Agent hosts: connection, realized vs published revision, workloads, last error", reply: []api.Host{}, handle: s.handleHosts},
		{method: "POST", path: p + "/hosts/{name}/revoke", role: api.RoleOperator, summary: "Revoke a host's agent certificate; it must enroll again", handle: s.handleRevokeHost},
		{method: "GET", path: p + "/tokens", role: api.RoleAdmin, summary: "API tokens", reply: []api.Token{}, handle: s.handleTokens},
		{method: "POST", path: p + "/tokens", role: api.RoleAdmin, summary: "Create an API token", request: api.TokenRequest{}, reply: api.TokenCreated{}, handle: s.handleCreateToken},
		{method: "DELETE", path: p + "/tokens/{id}", role: api.RoleAdmin, summary: "Revoke an API token", handle: s.handleDeleteToken},
	}
}

type ctxKey struct{}

func callerOf(ctx context.Context) store.Token {
	t, _ := ctx.Value(ctxKey{}).(store.Token)
	return t
}

func (s *Server) newMux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range s.routes {
		mux.Handle(rt.method+" "+rt.path, s.wrap(rt))
	}
	// Anything else under the API is a 404 in JSON, after auth so that the
	// shape of the API is not open either.
	mux.Handle(api.Prefix+"/", s.wrap(route{method: "*", path: api.Prefix + "/", role: api.RoleAuditor, handle: func(w http.ResponseWriter, r *http.Request) error {
		return httpError(http.StatusNotFound, fmt.Errorf("no route %s %s", r.Method, r.URL.Path))
	}}))
	// The web console: static files that use only the API above, so no
	// token is needed to load them.
	mux.Handle("/", console.Handler())
	return mux
}

// httpErr carries a status code with its cause.
type httpErr struct {
	code    int
	err     error
	details []api.FieldError
}

func (e *httpErr) Error() string { return e.err.Error() }
func (e *httpErr) Unwrap() error { return e.err }

func httpError(code int, err error) error { return &httpErr{code: code, err: err} }

func (s *Server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		err := s.serve(rt, sw, r)
		if err != nil {
			var he *httpErr
			code := http.StatusInternalServerError
			body := api.Error{Error: err.Error()}
			if errors.As(err, &he) {
				code = he.code
				body.Details = he.details
			} else if errors.Is(err, store.ErrNotFound) {
				code = http.StatusNotFound
			} else if errors.Is(err, store.ErrConflict) {
				code = http.StatusConflict
			}
			if code >= 500 {
				s.log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeJSON(sw, code, body)
		}
		s.metrics.observe(rt.method+" "+rt.path, sw.code, time.Since(start))
	})
}

func (s *Server) serve(rt route, w http.ResponseWriter, r *http.Request) error {
	if rt.role != "" {
		tok, err := s.authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bulkhead"`)
			return httpError(http.StatusUnauthorized, err)
		}
		if api.RoleRank(tok.Role) < api.RoleRank(rt.role) {
			return httpError(http.StatusForbidden, fmt.Errorf("role %q may not %s %s: needs %s", tok.Role, rt.method, rt.path, rt.role))
		}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, tok))
	}
	return rt.handle(w, r)
}

func (s *Server) authenticate(r *http.Request) (store.Token, error) {
	h := r.Header.Get("Authorization")
	secret, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || secret == "" {
		return store.Token{}, errors.New("missing bearer token")
	}
	tok, err := s.store.LookupToken(r.Context(), strings.TrimSpace(secret))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return store.Token{}, errors.New("invalid or expired token")
		}
		return store.Token{}, err
	}
	return tok, nil
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// readJSON decodes a request body strictly: unknown fields are errors.
func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 256<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return httpError(http.StatusBadRequest, fmt.Errorf("request body: %w", err))
	}
	return nil
}
