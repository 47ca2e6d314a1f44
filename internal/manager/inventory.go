package manager

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/inventory"
	"github.com/bulkhead/bulkhead/internal/inventory/cmdb"
	"github.com/bulkhead/bulkhead/internal/inventory/vcenter"
	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/store"
)

// Inventory from many sources: CMDB imports and vCenter syncs write their
// records (store.SourceStore) and, in the same transaction, the workloads
// that inventory.Merge makes of every source's records and the current
// inventory (agent bindings, operator declarations).

// Defaults of configured sources.
const (
	defaultSourceInterval = 15 * time.Minute
	// sourceTick is how often the manager looks for sources due a sync.
	sourceTick  = 15 * time.Second
	syncTimeout = 2 * time.Minute
)

// inventoryRoutes: CMDB import, vCenter sources, per-source facts (issue 5).
func (s *Server) inventoryRoutes() []route {
	p := api.Prefix
	return []route{
		{method: "POST", path: p + "/import/cmdb", role: api.RoleOperator, summary: "Import a CMDB export (CSV or JSON): rows become facts, merged into workloads", request: api.CMDBImportRequest{}, reply: api.InventoryResult{}, handle: s.handleImportCMDB},
		{method: "GET", path: p + "/sources", role: api.RoleAuditor, summary: "Inventory sources: configured ones and imports, with record counts and last sync", reply: []api.Source{}, handle: s.handleSources},
		{method: "POST", path: p + "/sources", role: api.RoleOperator, summary: "Configure an inventory source (vCenter) that is synced periodically", request: api.SourceRequest{}, reply: api.Source{}, handle: s.handleCreateSource},
		{method: "DELETE", path: p + "/sources/{name}", role: api.RoleOperator, summary: "Remove a source and its facts; workloads only it described go", reply: api.InventoryResult{}, handle: s.handleDeleteSource},
		{method: "POST", path: p + "/sources/{name}/sync", role: api.RoleOperator, summary: "Sync a configured source now", reply: api.InventoryResult{}, handle: s.handleSyncSource},
		{method: "GET", path: p + "/workloads/{name}/facts", role: api.RoleAuditor, summary: "Every fact about a workload: source, age, used or not and why", reply: api.WorkloadFacts{}, handle: s.handleWorkloadFacts},
		{method: "GET", path: p + "/inventory/conflicts", role: api.RoleAuditor, summary: "Facts sources disagree on (an IP claimed for two workloads, two values of a tag), with the one used", reply: []api.Conflict{}, handle: s.handleConflicts},
	}
}

func (s *Server) sourceStore() (store.SourceStore, error) {
	ss, ok := s.store.(store.SourceStore)
	if !ok {
		return nil, httpError(http.StatusNotImplemented, errors.New("this store keeps no inventory sources"))
	}
	return ss, nil
}

// validSourceName: source names follow the workload naming rules; "agent"
// and "operator" name what workloads themselves say.
func validSourceName(n string) error {
	if c, err := inventory.WorkloadName(n); err != nil || c != n {
		return fmt.Errorf("source name %q: use lowercase letters, digits, \"-\" and \".\"", n)
	}
	if n == string(inventory.KindAgent) || n == string(inventory.KindOperator) {
		return fmt.Errorf("source name %q is reserved", n)
	}
	return nil
}

func (s *Server) handleImportCMDB(w http.ResponseWriter, r *http.Request) error {
	var req api.CMDBImportRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Source == "" {
		req.Source = cmdb.DefaultSource
	}
	if err := validSourceName(req.Source); err != nil {
		return httpError(http.StatusBadRequest, err)
	}
	ss, err := s.sourceStore()
	if err != nil {
		return err
	}
	if src, err := ss.Source(r.Context(), req.Source); err == nil {
		return httpError(http.StatusConflict, fmt.Errorf("source %q is a configured %s source; import under another name", req.Source, src.Kind))
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	now := s.now()
	parsed, err := cmdb.Parse([]byte(req.Content), cmdb.Options{Format: req.Format, Mapping: req.Mapping, Source: req.Source, Now: now})
	if err != nil {
		if req.File != "" {
			err = fmt.Errorf("%s: %w", req.File, err)
		}
		return httpError(http.StatusUnprocessableEntity, err)
	}
	in := ingestion{
		actor: callerOf(r.Context()).Name, verb: "import", source: req.Source, file: req.File,
		records: parsed.Records, replace: req.Replace, dryRun: req.DryRun, rows: parsed.Rows,
	}
	for _, b := range parsed.Bad {
		in.bad = append(in.bad, api.BadRow{Line: b.Line, Record: b.Record, Reason: b.Reason})
	}
	res, err := s.ingest(r.Context(), in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// ingestion is a batch of one source's records to store and merge.
type ingestion struct {
	actor, verb, source, file string
	records                   []inventory.Record
	replace, deleteSource     bool
	dryRun                    bool
	rows                      int
	bad                       []api.BadRow
	skipped                   []string
}

// ingest stores a source's records and the workloads the merge of all
// records makes, in one transaction with the audit entries.
func (s *Server) ingest(ctx context.Context, in ingestion) (api.InventoryResult, error) {
	res := api.InventoryResult{Source: in.source, DryRun: in.dryRun, Rows: in.rows, Bad: in.bad, Skipped: in.skipped,
		Created: []string{}, Updated: []string{}, Deleted: []string{}, Conflicts: []api.Conflict{}}
	if res.Bad == nil {
		res.Bad = []api.BadRow{}
	}
	ss, err := s.sourceStore()
	if err != nil {
		return res, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	all, err := ss.SourceRecords(ctx, "")
	if err != nil {
		return res, err
	}
	incoming := map[string]bool{}
	for _, r := range in.records {
		incoming[r.Key] = true
	}
	old := map[string]*inventory.Record{}
	var next []inventory.Record
	for i := range all {
		r := &all[i]
		if r.Source != in.source {
			next = append(next, *r)
			continue
		}
		old[r.Key] = r
		switch {
		case in.deleteSource || in.replace && !incoming[r.Key]:
			res.RemovedRecords++
		case !incoming[r.Key]:
			next = append(next, *r)
		}
	}
	if !in.deleteSource {
		for i := range in.records {
			r := &in.records[i]
			switch o := old[r.Key]; {
			case o == nil:
				res.NewRecords++
			case o.Equal(r):
				res.UnchangedRecords++
			default:
				res.ChangedRecords++
			}
			next = append(next, *r)
		}
	}

	workloads, err := s.store.Workloads(ctx)
	if err != nil {
		return res, err
	}
	now := s.now()
	merged := inventory.Merge(next, workloads, now, inventory.Policy{})
	before := workloadSet(workloads)
	after := before.Clone()
	for _, wl := range merged.Upserts {
		if _, ok := before.Workloads[wl.Metadata.Name]; ok {
			res.Updated = append(res.Updated, wl.Metadata.Name)
		} else {
			res.Created = append(res.Created, wl.Metadata.Name)
		}
		after.Workloads[wl.Metadata.Name] = wl
	}
	for _, n := range merged.Deletes {
		res.Deleted = append(res.Deleted, n)
		delete(after.Workloads, n)
	}
	for _, c := range merged.Conflicts {
		res.Conflicts = append(res.Conflicts, apiConflict(c, now))
	}
	if in.dryRun {
		return res, nil
	}

	summary := fmt.Sprintf("%s %s: %d new, %d changed, %d unchanged, %d removed records; %d bad rows; workloads %d created, %d updated, %d deleted; %d conflicts",
		in.verb, in.source, res.NewRecords, res.ChangedRecords, res.UnchangedRecords, res.RemovedRecords, len(res.Bad),
		len(res.Created), len(res.Updated), len(res.Deleted), len(res.Conflicts))
	if in.file != "" {
		summary += " (file " + in.file + ")"
	}
	audit := []store.AuditEntry{{Actor: in.actor, Action: in.verb, Object: "Source/" + in.source, Diff: summary}}
	for _, ch := range policy.DiffSets(before, after) {
		audit = append(audit, store.AuditEntry{Actor: in.actor, Action: in.verb, Object: string(ch.Kind) + "/" + ch.Name, Diff: ch.Diff})
	}
	if err := ss.ApplyInventory(ctx, store.InventoryChange{
		Source: in.source, Records: in.records, Replace: in.replace, DeleteSource: in.deleteSource,
		Commit: store.Commit{Author: in.actor, Summary: summary, UpsertWorkloads: merged.Upserts, DeleteWorkloads: merged.Deletes, Audit: audit},
	}); err != nil {
		return res, err
	}
	if len(merged.Upserts)+len(merged.Deletes) > 0 {
		s.agents.Changed()
	}
	s.log.Info("inventory "+in.verb, "source", in.source, "records", len(in.records), "bad", len(res.Bad),
		"created", len(res.Created), "updated", len(res.Updated), "deleted", len(res.Deleted), "conflicts", len(res.Conflicts))
	return res, nil
}

func apiFact(f inventory.Fact, now time.Time) api.Fact {
	out := api.Fact{Workload: f.Workload, Source: f.Source, Kind: string(f.Kind), Key: f.Key, Attribute: f.Attribute,
		Value: f.Value, Stale: f.Stale, Used: f.Used, Reason: f.Reason}
	if !f.Observed.IsZero() {
		t := f.Observed
		out.Observed = &t
		out.Age = Age(now.Sub(f.Observed))
	}
	return out
}

func apiConflict(c inventory.Conflict, now time.Time) api.Conflict {
	out := api.Conflict{Subject: c.Subject}
	for _, f := range c.Claims {
		out.Claims = append(out.Claims, apiFact(f, now))
	}
	return out
}

// Age renders a duration the way people say how old something is:
// "40d", "3d4h", "2h5m", "12m", "45s".
func Age(d time.Duration) string {
	if d < 0 {
		return "0s"
	}
	day := 24 * time.Hour
	switch {
	case d >= 10*day:
		return fmt.Sprintf("%dd", d/day)
	case d >= day:
		return fmt.Sprintf("%dd%dh", d/day, d%day/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

// merge computes the merge of what is stored, for reading.
func (s *Server) merge(ctx context.Context) (inventory.Result, []*policy.Workload, time.Time, error) {
	ss, err := s.sourceStore()
	if err != nil {
		return inventory.Result{}, nil, time.Time{}, err
	}
	recs, err := ss.SourceRecords(ctx, "")
	if err != nil {
		return inventory.Result{}, nil, time.Time{}, err
	}
	wls, err := s.store.Workloads(ctx)
	if err != nil {
		return inventory.Result{}, nil, time.Time{}, err
	}
	now := s.now()
	return inventory.Merge(recs, wls, now, inventory.Policy{}), wls, now, nil
}

func (s *Server) handleWorkloadFacts(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	res, wls, now, err := s.merge(r.Context())
	if err != nil {
		return err
	}
	out := api.WorkloadFacts{Workload: name, Facts: []api.Fact{}}
	out.Exists = slices.ContainsFunc(wls, func(wl *policy.Workload) bool { return wl.Metadata.Name == name })
	for _, f := range res.FactsOf(name) {
		out.Facts = append(out.Facts, apiFact(f, now))
	}
	if !out.Exists && len(out.Facts) == 0 {
		return httpError(http.StatusNotFound, fmt.Errorf("no workload %q and no source names it", name))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleConflicts(w http.ResponseWriter, r *http.Request) error {
	res, _, now, err := s.merge(r.Context())
	if err != nil {
		return err
	}
	out := []api.Conflict{}
	for _, c := range res.Conflicts {
		out = append(out, apiConflict(c, now))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleSources(w http.ResponseWriter, r *http.Request) error {
	ss, err := s.sourceStore()
	if err != nil {
		return err
	}
	srcs, err := ss.Sources(r.Context())
	if err != nil {
		return err
	}
	recs, err := ss.SourceRecords(r.Context(), "")
	if err != nil {
		return err
	}
	count := map[string]int{}
	kind := map[string]inventory.Kind{}
	for _, rec := range recs {
		count[rec.Source]++
		kind[rec.Source] = rec.Kind
	}
	out := []api.Source{}
	for _, src := range srcs {
		a := apiSource(src)
		a.Records = count[src.Name]
		delete(count, src.Name)
		out = append(out, a)
	}
	for name, n := range count {
		out = append(out, api.Source{Name: name, Kind: string(kind[name]), Records: n})
	}
	dirs, err := s.directorySourcesAsInventory(r.Context()) // identity.go: LDAP sources, users as records
	if err != nil {
		return err
	}
	out = append(out, dirs...)
	slices.SortFunc(out, func(a, b api.Source) int { return strings.Compare(a.Name, b.Name) })
	writeJSON(w, http.StatusOK, out)
	return nil
}

func apiSource(src store.Source) api.Source {
	a := api.Source{Name: src.Name, Kind: string(src.Kind), URL: src.URL, User: src.User, Insecure: src.Insecure,
		Interval: src.Interval.String(), Configured: true, LastError: src.LastError}
	if !src.LastSync.IsZero() {
		t := src.LastSync
		a.LastSync = &t
	}
	return a
}

func (s *Server) handleCreateSource(w http.ResponseWriter, r *http.Request) error {
	var req api.SourceRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := validSourceName(req.Name); err != nil {
		return httpError(http.StatusBadRequest, err)
	}
	if req.Kind == api.SourceKindLDAP {
		return httpError(http.StatusBadRequest, fmt.Errorf("source %s: configure ldap sources with POST %s/directory/sources", req.Name, api.Prefix))
	}
	if req.Kind != string(inventory.KindVCenter) {
		return httpError(http.StatusBadRequest, fmt.Errorf("source %s: kind %q: only vcenter sources are synced (import CMDB exports with POST %s/import/cmdb)", req.Name, req.Kind, api.Prefix))
	}
	if err := vcenter.Check(vcenter.Config{URL: req.URL}); err != nil {
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
	ss, err := s.sourceStore()
	if err != nil {
		return err
	}
	src, err := ss.CreateSource(r.Context(), store.Source{Name: req.Name, Kind: inventory.KindVCenter, URL: req.URL,
		User: req.User, Password: req.Password, Insecure: req.Insecure, Interval: interval})
	if err != nil {
		return err
	}
	actor := callerOf(r.Context()).Name
	if _, err := s.store.Commit(r.Context(), store.Commit{Author: actor, Audit: []store.AuditEntry{{Actor: actor, Action: "source.create", Object: "Source/" + src.Name,
		Diff: fmt.Sprintf("kind %s, url %s, user %s, insecure %t, interval %s", src.Kind, src.URL, src.User, src.Insecure, src.Interval)}}}); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, apiSource(src))
	return nil
}

func (s *Server) handleDeleteSource(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := s.notDirectorySource(r.Context(), name, "DELETE "+api.Prefix+"/directory/sources/"+name); err != nil {
		return err
	}
	ss, err := s.sourceStore()
	if err != nil {
		return err
	}
	_, cerr := ss.Source(r.Context(), name)
	if cerr != nil && !errors.Is(cerr, store.ErrNotFound) {
		return cerr
	}
	recs, err := ss.SourceRecords(r.Context(), name)
	if err != nil {
		return err
	}
	if cerr != nil && len(recs) == 0 {
		return httpError(http.StatusNotFound, fmt.Errorf("no source %q", name))
	}
	res, err := s.ingest(r.Context(), ingestion{actor: callerOf(r.Context()).Name, verb: "source.delete", source: name, deleteSource: true})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) handleSyncSource(w http.ResponseWriter, r *http.Request) error {
	if err := s.notDirectorySource(r.Context(), r.PathValue("name"), "POST "+api.Prefix+"/directory/sources/"+r.PathValue("name")+"/sync"); err != nil {
		return err
	}
	ss, err := s.sourceStore()
	if err != nil {
		return err
	}
	src, err := ss.Source(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	res, err := s.syncSource(r.Context(), ss, src, callerOf(r.Context()).Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// syncSource reads a vCenter and replaces its records. A failed sync is
// recorded on the source and keeps its previous records.
func (s *Server) syncSource(ctx context.Context, ss store.SourceStore, src store.Source, actor string) (api.InventoryResult, error) {
	return recordedSync(ctx, s.now(),
		func(ctx context.Context) (api.InventoryResult, error) { return s.pullSource(ctx, src, actor) },
		func(ctx context.Context, started time.Time, msg string) error {
			return ss.RecordSync(ctx, src.Name, started, msg)
		})
}

// recordedSync runs one sync of a source (inventory or directory) under
// syncTimeout and records the attempt — its start and error text — with
// record, even when the request that asked for it ended. pull must leave
// what the last sync read in place when it fails.
func recordedSync[T any](ctx context.Context, started time.Time, pull func(context.Context) (T, error),
	record func(ctx context.Context, started time.Time, msg string) error) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	res, err := pull(ctx)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if rerr := record(context.WithoutCancel(ctx), started, msg); rerr != nil && err == nil {
		err = rerr
	}
	return res, err
}

// syncDue says whether a source synced every interval (0: only on
// request) whose last attempt was at last is due at now.
func syncDue(interval time.Duration, last, now time.Time) bool {
	return interval > 0 && (last.IsZero() || now.Sub(last) >= interval)
}

func (s *Server) pullSource(ctx context.Context, src store.Source, actor string) (api.InventoryResult, error) {
	if src.Kind != inventory.KindVCenter {
		return api.InventoryResult{}, httpError(http.StatusBadRequest, fmt.Errorf("source %s: kind %s cannot be synced", src.Name, src.Kind))
	}
	vc, err := vcenter.Sync(ctx, vcenter.Config{Source: src.Name, URL: src.URL, User: src.User, Password: src.Password, Insecure: src.Insecure}, s.now())
	if err != nil {
		return api.InventoryResult{}, httpError(http.StatusBadGateway, err)
	}
	return s.ingest(ctx, ingestion{actor: actor, verb: "sync", source: src.Name, records: vc.Records, replace: true, rows: len(vc.Records), skipped: vc.Skipped})
}

// startInventorySources starts the periodic sync of configured sources
// (vCenter); they stop with ctx.
func (s *Server) startInventorySources(ctx context.Context, bg *sync.WaitGroup) {
	ss, ok := s.store.(store.SourceStore)
	if !ok {
		return
	}
	bg.Go(func() {
		t := time.NewTicker(sourceTick)
		defer t.Stop()
		for {
			s.syncDueSources(ctx, ss)
			s.syncDueDirectories(ctx) // identity.go
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
}

// syncDueSources syncs, one after the other, the sources whose interval
// has passed since their last attempt.
func (s *Server) syncDueSources(ctx context.Context, ss store.SourceStore) {
	srcs, err := ss.Sources(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("inventory sources: list", "err", err)
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
		if _, err := s.syncSource(ctx, ss, src, "source:"+src.Name); err != nil {
			s.log.Warn("inventory source sync failed; its previous facts are kept", "source", src.Name, "err", err)
		}
	}
}
