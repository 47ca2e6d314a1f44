package api

import "time"

// CMDBImportRequest is the body of POST /api/v1/import/cmdb.
type CMDBImportRequest struct {
	// Content is the export file as text.
	Content string `json:"content"`
	// Format is csv or json; empty guesses from the content.
	Format string `json:"format,omitempty"`
	// Mapping overrides the default field -> column mapping (a ServiceNow
	// cmdb_ci_server export needs none); an empty column drops a default.
	Mapping map[string]string `json:"mapping,omitempty"`
	// Source names the import's records; default "cmdb".
	Source string `json:"source,omitempty"`
	// File names the file in answers and the audit log.
	File string `json:"file,omitempty"`
	// Replace drops the source's records that this file does not have
	// (the file is the complete export); by default rows are upserted.
	Replace bool `json:"replace,omitempty"`
	DryRun  bool `json:"dryRun,omitempty"`
}

// BadRow is a row of an import that was not used.
type BadRow struct {
	Line   int    `json:"line"`
	Record int    `json:"record,omitempty"` // 1-based JSON record index
	Reason string `json:"reason"`
}

// InventoryResult answers an import or a sync: what the source's records
// did to the inventory.
type InventoryResult struct {
	Source string `json:"source"`
	DryRun bool   `json:"dryRun,omitempty"`
	// Rows read; Bad lists those not used.
	Rows int      `json:"rows"`
	Bad  []BadRow `json:"bad"`
	// Records of the source: new, changed or unchanged since the last
	// import or sync, and removed (with replace, or a sync).
	NewRecords       int `json:"newRecords"`
	ChangedRecords   int `json:"changedRecords"`
	UnchangedRecords int `json:"unchangedRecords"`
	RemovedRecords   int `json:"removedRecords"`
	// Workloads the merge created, updated or deleted.
	Created []string `json:"created"`
	Updated []string `json:"updated"`
	Deleted []string `json:"deleted"`
	// Skipped notes what a source left out (VMs without usable names).
	Skipped []string `json:"skipped,omitempty"`
	// Conflicts are every disagreement between sources after the merge.
	Conflicts []Conflict `json:"conflicts"`
}

// Fact is one thing one source says about one workload attribute.
type Fact struct {
	Workload string `json:"workload"`
	Source   string `json:"source"`
	Kind     string `json:"kind"` // agent, operator, vcenter, cmdb
	Key      string `json:"key,omitempty"`
	// Attribute is name, ip, tag.KEY, os or another attribute.
	Attribute string `json:"attribute"`
	Value     string `json:"value"`
	// Observed is absent for live facts (agent binding, operator).
	Observed *time.Time `json:"observed,omitempty"`
	// Age is how long ago it was observed, rounded ("3d4h", "12m").
	Age    string `json:"age,omitempty"`
	Stale  bool   `json:"stale,omitempty"`
	Used   bool   `json:"used"`
	Reason string `json:"reason"`
}

// Conflict is an attribute sources disagree on; Claims[0] was used.
type Conflict struct {
	Subject string `json:"subject"`
	Claims  []Fact `json:"claims"`
}

// WorkloadFacts answers GET /api/v1/workloads/{name}/facts.
type WorkloadFacts struct {
	Workload string `json:"workload"`
	// Exists is false for a name only sources give, which the merge did
	// not make a workload (no address left, for example).
	Exists bool   `json:"exists"`
	Facts  []Fact `json:"facts"`
}

// SourceRequest is the body of POST /api/v1/sources.
type SourceRequest struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"` // vcenter
	URL      string `json:"url"`
	User     string `json:"user,omitempty"`
	Password string `json:"password,omitempty"`
	Insecure bool   `json:"insecure,omitempty"`
	// Interval between syncs as a Go duration; default 15m, "0" syncs
	// only on request.
	Interval string `json:"interval,omitempty"`
}

// Source is a configured inventory source, or a source of imported
// records (kind cmdb, no URL). The password is never returned.
type Source struct {
	Name       string     `json:"name"`
	Kind       string     `json:"kind"`
	URL        string     `json:"url,omitempty"`
	User       string     `json:"user,omitempty"`
	Insecure   bool       `json:"insecure,omitempty"`
	Interval   string     `json:"interval,omitempty"`
	Configured bool       `json:"configured"`
	Records    int        `json:"records"`
	LastSync   *time.Time `json:"lastSync,omitempty"`
	LastError  string     `json:"lastError,omitempty"`
}
