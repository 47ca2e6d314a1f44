package manager

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/directory"
	"github.com/bulkhead/bulkhead/internal/directory/ldap"
	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/nft"
	"github.com/bulkhead/bulkhead/internal/span"
	"github.com/bulkhead/bulkhead/internal/store"
)

// User identity (issue 7). Directory sources (LDAP, Active Directory) are
// synced like inventory sources; what they read is stored whole per sync
// and kept in memory as a directory.Directory, which the evaluator compiles
// directoryGroups with (evalcache.go). Login sessions, from the events
// API, are stored and kept in a directory.Table, which names the user of
// each flow record at ingest (flows.go).

// maxEvents bounds one POST /identity/events.
const maxEvents = 100_000

// identity is the manager's in-memory directory and sessions, loaded from
// the store on first use.
type identity struct {
	st store.IdentityStore // nil when the store keeps no identity

	mu       sync.RWMutex
	loaded   bool
	dir      *directory.Directory
	digest   [32]byte // of what dir was built from
	version  int64    // moves when dir changes; evaluators are keyed by it
	sessions *directory.Table
	// sessVersion moves when sessions change; host spans are keyed by it
	// (port-range sessions key user rules in the kernel).
	sessVersion int64
}

func newIdentity(st store.Store) *identity {
	is, _ := st.(store.IdentityStore)
	return &identity{st: is, sessions: directory.NewTable(nil)}
}

// load reads the directory and recent sessions once; a failure is retried
// by the next caller.
func (id *identity) load(ctx context.Context, now time.Time) error {
	id.mu.RLock()
	done := id.loaded || id.st == nil
	id.mu.RUnlock()
	if done {
		return nil
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.loaded {
		return nil
	}
	if err := id.reloadDirectoryLocked(ctx); err != nil {
		return err
	}
	ss, err := id.st.Sessions(ctx, now.Add(-flowMaxAge))
	if err != nil {
		return err
	}
	id.sessions = directory.NewTable(ss)
	id.sessVersion++
	id.loaded = true
	return nil
}

// portSessions returns the open sessions for the host spans and the
// sessions' version: the port ranges of multi-user hosts (RDSH), and the
// whole-address logins (a VDI desktop) as every source port of an address
// that has no port-range session — the kernel keys user rules by source
// address and port range, and Who prefers a port-range session too.
func (id *identity) portSessions(ctx context.Context, now time.Time) ([]span.Session, int64, error) {
	if err := id.load(ctx, now); err != nil {
		return nil, 0, err
	}
	id.mu.RLock()
	defer id.mu.RUnlock()
	var out, whole []span.Session
	ranged := map[netip.Addr]bool{}
	for _, x := range id.sessions.Sessions(netip.Addr{}) {
		if !x.Open() || !x.IP.IsValid() {
			continue
		}
		if x.Ports.Whole() {
			whole = append(whole, span.Session{User: x.User, Addr: x.IP, Ports: nft.Ports(1, 65535)})
			continue
		}
		ranged[x.IP] = true
		out = append(out, span.Session{User: x.User, Addr: x.IP, Ports: nft.Ports(x.Ports.Lo, x.Ports.Hi)})
	}
	for _, x := range whole {
		if !ranged[x.Addr] {
			out = append(out, x)
		}
	}
	return out, id.sessVersion, nil
}

// reloadDirectoryLocked rebuilds the directory from the store, moving the
// version only when its content changed.
func (id *identity) reloadDirectoryLocked(ctx context.Context) error {
	users, groups, err := id.st.Directory(ctx)
	if err != nil {
		return err
	}
	b, err := json.Marshal(struct {
		U []directory.User
		G []directory.Group
	}{users, groups})
	if err != nil {
		return err
	}
	if d := sha256.Sum256(b); d != id.digest || id.dir == nil {
		id.digest, id.dir = d, directory.New(users, groups)
		id.version++
	}
	return nil
}

// directory returns the current directory and its version.
func (id *identity) directory(ctx context.Context, now time.Time) (*directory.Directory, int64, error) {
	if err := id.load(ctx, now); err != nil {
		return nil, 0, err
	}
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.dir, id.version, nil
}

func (s *Server) identity() *identity { return s.evals.ident }

func (s *Server) identityStore() (store.IdentityStore, error) {
	if s.identity().st == nil {
		return nil, httpError(http.StatusNotImplemented, errors.New("this store keeps no directory or sessions"))
	}
	return s.identity().st, nil
}

// nameUsers sets the user of each record without one from the sessions:
// the user logged on at its source address (and source port, on a
// multi-user host) when the connection started.
func (s *Server) nameUsers(ctx context.Context, recs []flow.Record) {
	id := s.identity()
	if err := id.load(ctx, s.now()); err != nil {
		s.log.Warn("flows: no sessions to name users", "err", err)
		return
	}
	id.mu.RLock()
	defer id.mu.RUnlock()
	for i := range recs {
		r := &recs[i]
		if r.User != "" {
			continue
		}
		at := r.Start
		if at.IsZero() {
			at = r.Seen
		}
		if sess, ok := id.sessions.Who(r.Src, r.SrcPort, at); ok {
			r.User = sess.User
		}
	}
}

func (s *Server) identityRoutes() []route {
	p := api.Prefix
	return []route{
		{method: "GET", path: p + "/directory/sources", role: api.RoleAuditor, summary: "Directory sources (LDAP / Active Directory) with user and group counts and last sync", reply: []api.DirectorySource{}, handle: s.handleDirectorySources},
		{method: "POST", path: p + "/directory/sources", role: api.RoleOperator, summary: "Configure an LDAP / Active Directory source whose users and groups are synced periodically", request: api.DirectorySourceRequest{}, reply: api.DirectorySource{}, handle: s.handleCreateDirectorySource},
		{method: "POST", path: p + "/directory/sources/{name}/sync", role: api.RoleOperator, summary: "Sync a directory source now", reply: api.DirectorySync{}, handle: s.handleSyncDirectorySource},
		{method: "DELETE", path: p + "/directory/sources/{name}", role: api.RoleOperator, summary: "Remove a directory source with its users and groups", handle: s.handleDeleteDirectorySource},
		{method: "GET", path: p + "/directory/users", role: api.RoleAuditor, summary: "Synced users with their groups, nesting resolved (?group=)", reply: []api.DirectoryUser{}, handle: s.handleDirectoryUsers},
		{method: "GET", path: p + "/directory/groups", role: api.RoleAuditor, summary: "Synced groups with direct members and every user through nesting", reply: []api.DirectoryGroup{}, handle: s.handleDirectoryGroups},
		{method: "POST", path: p + "/identity/events", role: api.RoleOperator, summary: "Login and logoff events (Windows 4624/4634, {user, ip, start, end}, RDSH {user, ip, ports, start, end}); bad ones reported by index", request: api.IdentityEventsRequest{}, reply: api.IdentityEventsResult{}, handle: s.handleIdentityEvents},
		{method: "GET", path: p + "/identity/sessions", role: api.RoleAuditor, summary: "Login sessions, newest first (?ip=&user=&open=true)", reply: []api.IdentitySession{}, handle: s.handleIdentitySessions},
		{method: "GET", path: p + "/identity/who", role: api.RoleAuditor, summary: "The user behind an address and source port at a time (?ip=&port=&at=)", reply: api.IdentityWho{}, handle: s.handleIdentityWho},
	}
}

func apiDirectorySource(src store.DirectorySource, d *directory.Directory) api.DirectorySource {
	a := api.DirectorySource{Name: src.Name, URL: src.URL, BindDN: src.BindDN, BaseDN: src.BaseDN,
		UserFilter: or(src.UserFilter, ldap.DefaultUserFilter), GroupFilter: or(src.GroupFilter, ldap.DefaultGroupFilter),
		StartTLS: src.StartTLS, Insecure: src.Insecure, Interval: src.Interval.String(), LastError: src.LastError}
	for _, u := range d.Users() {
		if u.Source == src.Name {
			a.Users++
		}
	}
	for _, g := range d.Groups() {
		if g.Source == src.Name {
			a.Groups++
		}
	}
	if !src.LastSync.IsZero() {
		t := src.LastSync
		a.LastSync = &t
	}
	return a
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (s *Server) handleDirectorySources(w http.ResponseWriter, r *http.Request) error {
	is, err := s.identityStore()
	if err != nil {
		return err
	}
	srcs, err := is.DirectorySources(r.Context())
	if err != nil {
		return err
	}
	d, _, err := s.identity().directory(r.Context(), s.now())
	if err != nil {
		return err
	}
	out := []api.DirectorySource{}
	for _, src := range srcs {
		out = append(out, apiDirectorySource(src, d))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// directorySourcesAsInventory lists directory sources the way GET /sources
// shows sources, so that one list has them all.
func (s *Server) directorySourcesAsInventory(ctx context.Context) ([]api.Source, error) {
	is := s.identity().st
	if is == nil {
		return nil, nil
	}
	srcs, err := is.DirectorySources(ctx)
	if err != nil {
		return nil, err
	}
	d, _, err := s.identity().directory(ctx, s.now())
	if err != nil {
		return nil, err
	}
	var out []api.Source
	for _, src := range srcs {
		a := apiDirectorySource(src, d)
		out = append(out, api.Source{Name: src.Name, Kind: api.SourceKindLDAP, URL: src.URL, User: src.BindDN, Insecure: src.Insecure,
			Interval: a.Interval, Configured: true, Records: a.Users, LastSync: a.LastSync, LastError: src.LastError})
	}
	return out, nil
}

// notDirectorySource answers the inventory routes asked about a directory
// source with where to go.
func (s *Server) notDirectorySource(ctx context.Context, name, what string) error {
	is := s.identity().st
	if is == nil {
		return nil
	}
	if _, err := is.DirectorySource(ctx, name); err == nil {
		return httpError(http.StatusConflict, fmt.Errorf("source %s is a directory (ldap) source: %s", name, what))
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

func (s *Server) handleCreateDirectorySource(w http.ResponseWriter, r *http.Request) error {
	var req api.DirectorySourceRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := validSourceName(req.Name); err != nil {
		return httpError(http.StatusBadRequest, err)
	}
	cfg := ldap.Config{URL: req.URL, BindDN: req.BindDN, BaseDN: req.BaseDN, UserFilter: req.UserFilter, GroupFilter: req.GroupFilter, StartTLS: req.StartTLS}
	if err := ldap.Check(cfg); err != nil {
		return httpError(http.StatusBadRequest, fmt.Errorf("source %s: %w", req.Name, err))
	}
	interval := defaultSourceInterval
	if req.Interval != "" {
		d, err := time.ParseDuration(req.Interval)
		if err != nil || d < 0 || d > 0 && d < time.Minute {
			return httpError(http.StatusBadRequest, fmt.Errorf("source %s: interval %q: want a duration of at least 1m, or 0 to sync only on request", req.Name, req.Interval))
		}
		interval = d
	}
	is, err := s.identityStore()
	if err != nil {
		return err
	}
	actor := callerOf(r.Context()).Name
	src := store.DirectorySource{Name: req.Name, URL: req.URL, BindDN: req.BindDN, Password: req.Password, BaseDN: req.BaseDN,
		UserFilter: req.UserFilter, GroupFilter: req.GroupFilter, StartTLS: req.StartTLS, Insecure: req.Insecure, Interval: interval}
	src, err = is.CreateDirectorySource(r.Context(), src, []store.AuditEntry{{Actor: actor, Action: "source.create", Object: "Source/" + req.Name,
		Diff: fmt.Sprintf("kind ldap, url %s, bind DN %s, base DN %s, start TLS %t, insecure %t, interval %s", req.URL, req.BindDN, req.BaseDN, req.StartTLS, req.Insecure, interval)}})
	if err != nil {
		return err
	}
	d, _, err := s.identity().directory(r.Context(), s.now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, apiDirectorySource(src, d))
	return nil
}

func (s *Server) handleSyncDirectorySource(w http.ResponseWriter, r *http.Request) error {
	is, err := s.identityStore()
	if err != nil {
		return err
	}
	src, err := is.DirectorySource(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	res, err := s.syncDirectory(r.Context(), is, src, callerOf(r.Context()).Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// syncDirectory reads a directory source and replaces what its last sync
// read. A failed sync is recorded on the source and keeps the old users
// and groups.
func (s *Server) syncDirectory(ctx context.Context, is store.IdentityStore, src store.DirectorySource, actor string) (api.DirectorySync, error) {
	return recordedSync(ctx, s.now(),
		func(ctx context.Context) (api.DirectorySync, error) { return s.pullDirectory(ctx, is, src, actor) },
		func(ctx context.Context, started time.Time, msg string) error {
			return is.RecordDirectorySync(ctx, src.Name, started, msg)
		})
}

func (s *Server) pullDirectory(ctx context.Context, is store.IdentityStore, src store.DirectorySource, actor string) (api.DirectorySync, error) {
	out := api.DirectorySync{Source: src.Name, AddedUsers: []string{}, RemovedUsers: []string{}, Skipped: []string{}}
	read, err := ldap.Sync(ctx, ldap.Config{Source: src.Name, URL: src.URL, BindDN: src.BindDN, Password: src.Password, BaseDN: src.BaseDN,
		UserFilter: src.UserFilter, GroupFilter: src.GroupFilter, StartTLS: src.StartTLS, Insecure: src.Insecure})
	if err != nil {
		return out, httpError(http.StatusBadGateway, err)
	}
	out.Users, out.Groups = len(read.Users), len(read.Groups)
	if read.Skipped != nil {
		out.Skipped = read.Skipped
	}
	id := s.identity()
	if err := id.load(ctx, s.now()); err != nil {
		return out, err
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	before := map[string]bool{}
	for _, u := range id.dir.Users() {
		if u.Source == src.Name {
			before[u.Name] = true
		}
	}
	for _, u := range read.Users {
		if !before[u.Name] {
			out.AddedUsers = append(out.AddedUsers, u.Name)
		}
		delete(before, u.Name)
	}
	for u := range before {
		out.RemovedUsers = append(out.RemovedUsers, u)
	}
	slices.Sort(out.AddedUsers)
	slices.Sort(out.RemovedUsers)
	summary := fmt.Sprintf("sync %s: %d users (%d added, %d removed), %d groups, %d skipped",
		src.Name, out.Users, len(out.AddedUsers), len(out.RemovedUsers), out.Groups, len(out.Skipped))
	if err := is.ReplaceDirectory(ctx, src.Name, read.Users, read.Groups,
		[]store.AuditEntry{{Actor: actor, Action: "sync", Object: "Source/" + src.Name, Diff: summary}}); err != nil {
		return out, err
	}
	v := id.version
	if err := id.reloadDirectoryLocked(ctx); err != nil {
		return out, err
	}
	if id.version != v {
		// Directory groups decide rules: hosts' states are computed again
		// (and sent only where they differ).
		s.agents.Changed()
	}
	s.log.Info("directory sync", "source", src.Name, "users", out.Users, "groups", out.Groups,
		"added", len(out.AddedUsers), "removed", len(out.RemovedUsers), "skipped", len(out.Skipped))
	return out, nil
}

func (s *Server) handleDeleteDirectorySource(w http.ResponseWriter, r *http.Request) error {
	is, err := s.identityStore()
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	actor := callerOf(r.Context()).Name
	id := s.identity()
	if err := id.load(r.Context(), s.now()); err != nil {
		return err
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	if err := is.DeleteDirectorySource(r.Context(), name, []store.AuditEntry{{Actor: actor, Action: "source.delete", Object: "Source/" + name}}); err != nil {
		return err
	}
	if err := id.reloadDirectoryLocked(r.Context()); err != nil {
		return err
	}
	s.agents.Changed()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// syncDueDirectories syncs the directory sources whose interval has
// passed since their last attempt.
func (s *Server) syncDueDirectories(ctx context.Context) {
	is := s.identity().st
	if is == nil {
		return
	}
	srcs, err := is.DirectorySources(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("directory sources: list", "err", err)
		}
		return
	}
	for _, src := range srcs {
		if ctx.Err() != nil {
			return
		}
		if !syncDue(src.Interval, src.LastSync, s.now()) {
			continue
		}
		if _, err := s.syncDirectory(ctx, is, src, "source:"+src.Name); err != nil {
			s.log.Warn("directory sync failed; its previous users and groups are kept", "source", src.Name, "err", err)
		}
	}
}

func (s *Server) handleDirectoryUsers(w http.ResponseWriter, r *http.Request) error {
	d, _, err := s.identity().directory(r.Context(), s.now())
	if err != nil {
		return err
	}
	group := directory.Name(r.URL.Query().Get(api.UserGroup))
	out := []api.DirectoryUser{}
	for _, u := range d.Users() {
		groups := d.GroupsOf(u.Name)
		if group != "" && !slices.Contains(groups, group) {
			continue
		}
		out = append(out, api.DirectoryUser{Name: u.Name, Source: u.Source, DN: u.DN, Display: u.Display, Groups: nonNilStrings(groups)})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleDirectoryGroups(w http.ResponseWriter, r *http.Request) error {
	d, _, err := s.identity().directory(r.Context(), s.now())
	if err != nil {
		return err
	}
	out := []api.DirectoryGroup{}
	for _, g := range d.Groups() {
		out = append(out, api.DirectoryGroup{Name: g.Name, Source: g.Source, DN: g.DN,
			Users: nonNilStrings(g.Users), Groups: nonNilStrings(g.Groups), Members: nonNilStrings(d.Members(g.Name))})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

type parsedEvent struct {
	index int
	ev    directory.Event
}

func (pe parsedEvent) at() time.Time {
	if pe.ev.Logon {
		return pe.ev.Start
	}
	return pe.ev.End
}

func (s *Server) handleIdentityEvents(w http.ResponseWriter, r *http.Request) error {
	var req api.IdentityEventsRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if len(req.Events) > maxEvents {
		return httpError(http.StatusRequestEntityTooLarge, fmt.Errorf("events: %d in one request, at most %d", len(req.Events), maxEvents))
	}
	is, err := s.identityStore()
	if err != nil {
		return err
	}
	now := s.now()
	res := api.IdentityEventsResult{Ignored: []api.BadEvent{}, Bad: []api.BadEvent{}}
	var evs []parsedEvent
	for i, raw := range req.Events {
		ev, err := directory.ParseEvent(raw, now)
		switch {
		case errors.Is(err, directory.ErrIgnored):
			res.Ignored = append(res.Ignored, api.BadEvent{Index: i, Reason: err.Error()})
		case err != nil:
			res.Bad = append(res.Bad, api.BadEvent{Index: i, Reason: err.Error()})
		default:
			evs = append(evs, parsedEvent{i, ev})
		}
	}
	// A SIEM exports in its own order: apply by time, so that a logoff
	// sent before its logon still ends it.
	slices.SortStableFunc(evs, func(a, b parsedEvent) int { return a.at().Compare(b.at()) })

	id := s.identity()
	if err := id.load(r.Context(), now); err != nil {
		return err
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	var changed []*directory.Session
	seen := map[*directory.Session]bool{}
	for _, pe := range evs {
		sess, err := id.sessions.Apply(pe.ev)
		if err != nil {
			res.Bad = append(res.Bad, api.BadEvent{Index: pe.index, Reason: err.Error()})
			continue
		}
		res.Accepted++
		if pe.ev.Logon && sess.ID == 0 && !seen[sess] {
			res.Started++
		}
		if !pe.ev.End.IsZero() {
			res.Ended++
		}
		if !seen[sess] {
			seen[sess] = true
			changed = append(changed, sess)
		}
	}
	if len(changed) > 0 {
		id.sessVersion++
		// Port-range sessions key user rules in the hosts' kernels.
		defer s.agents.Changed()
		if err := is.SaveSessions(r.Context(), changed); err != nil {
			// The table holds what the store does not: read it again.
			id.loaded = false
			return err
		}
	}
	id.sessions.Prune(now.Add(-flowMaxAge))
	slices.SortFunc(res.Bad, func(a, b api.BadEvent) int { return a.Index - b.Index })
	s.log.Info("identity events", "events", len(req.Events), "accepted", res.Accepted, "started", res.Started, "ended", res.Ended,
		"ignored", len(res.Ignored), "bad", len(res.Bad))
	writeJSON(w, http.StatusOK, res)
	return nil
}

func apiSession(x directory.Session, d *directory.Directory) api.IdentitySession {
	out := api.IdentitySession{ID: x.ID, User: x.User, Domain: x.Domain, IP: x.IP.String(), Ports: x.Ports.String(),
		Start: x.Start, Source: x.Source, LogonID: x.LogonID, Groups: nonNilStrings(d.GroupsOf(x.User))}
	if !x.End.IsZero() {
		e := x.End
		out.End = &e
	}
	return out
}

func (s *Server) handleIdentitySessions(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var ip netip.Addr
	if v := q.Get(api.SessionIP); v != "" {
		var err error
		if ip, err = netip.ParseAddr(v); err != nil {
			return httpError(http.StatusBadRequest, fmt.Errorf("%s %q: not an IP address", api.SessionIP, v))
		}
	}
	user := directory.Name(q.Get(api.SessionUser))
	open := false
	if v := q.Get(api.SessionOpen); v != "" {
		var err error
		if open, err = strconv.ParseBool(v); err != nil {
			return httpError(http.StatusBadRequest, fmt.Errorf("%s %q: want true or false", api.SessionOpen, v))
		}
	}
	id := s.identity()
	d, _, err := id.directory(r.Context(), s.now())
	if err != nil {
		return err
	}
	id.mu.RLock()
	all := id.sessions.Sessions(ip)
	id.mu.RUnlock()
	out := []api.IdentitySession{}
	for _, x := range all {
		if user != "" && x.User != user || open && !x.Open() {
			continue
		}
		out = append(out, apiSession(x, d))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleIdentityWho(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	ip, err := netip.ParseAddr(q.Get(api.SessionIP))
	if err != nil {
		return httpError(http.StatusBadRequest, fmt.Errorf("%s %q: not an IP address", api.SessionIP, q.Get(api.SessionIP)))
	}
	var port uint16
	if v := q.Get(api.WhoPort); v != "" {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || n == 0 {
			return httpError(http.StatusBadRequest, fmt.Errorf("%s %q: want a port 1-65535", api.WhoPort, v))
		}
		port = uint16(n)
	}
	at := s.now()
	if v := q.Get(api.WhoAt); v != "" {
		if at, err = parseSince(v, at); err != nil {
			return httpError(http.StatusBadRequest, fmt.Errorf("%s: %w", api.WhoAt, err))
		}
	}
	id := s.identity()
	d, _, err := id.directory(r.Context(), s.now())
	if err != nil {
		return err
	}
	id.mu.RLock()
	sess, ok := id.sessions.Who(ip, port, at)
	id.mu.RUnlock()
	out := api.IdentityWho{IP: ip.String(), Port: port, At: at.UTC()}
	if ok {
		a := apiSession(sess, d)
		out.User, out.Session = sess.User, &a
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// userFilter reads ?user= of GET /flows.
func userFilter(r *http.Request) string {
	return directory.Name(strings.TrimSpace(r.URL.Query().Get(api.FlowUser)))
}
