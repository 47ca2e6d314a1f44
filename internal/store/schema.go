package store

// sqliteMigrations are the SQLite schema steps; PRAGMA user_version counts how
// many a database has had. Append only: a released step is never edited.
//
// Times are Unix nanoseconds (UTC). Revision numbers are given by the store,
// not by autoincrement, so that a commit can insert exactly Base+1.
var sqliteMigrations = []string{
	// 1: initial schema.
	`
CREATE TABLE revisions (
	number      INTEGER PRIMARY KEY,
	author      TEXT    NOT NULL,
	time_ns     INTEGER NOT NULL,
	summary     TEXT    NOT NULL,
	rollback_to INTEGER REFERENCES revisions(number),
	encoding    TEXT    NOT NULL,
	body        BLOB    NOT NULL
);

CREATE TABLE workloads (
	name       TEXT    PRIMARY KEY,
	body       BLOB    NOT NULL,
	updated_ns INTEGER NOT NULL
);

CREATE TABLE audit (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	time_ns  INTEGER NOT NULL,
	actor    TEXT    NOT NULL,
	action   TEXT    NOT NULL,
	object   TEXT    NOT NULL,
	revision INTEGER REFERENCES revisions(number),
	diff     TEXT    NOT NULL
);
CREATE INDEX audit_time   ON audit(time_ns);
CREATE INDEX audit_actor  ON audit(actor, time_ns);
CREATE INDEX audit_object ON audit(object, time_ns);

CREATE TABLE tokens (
	id         TEXT    PRIMARY KEY,
	name       TEXT    NOT NULL,
	role       TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'auditor')),
	hash       BLOB    NOT NULL UNIQUE,
	created_ns INTEGER NOT NULL,
	expires_ns INTEGER
);

CREATE TABLE sequences (
	name TEXT    PRIMARY KEY,
	next INTEGER NOT NULL
);
INSERT INTO sequences (name, next) VALUES ('rule_id', 100);

CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
`,
	// 2: agent hosts and their one-time bootstrap tokens.
	`
CREATE TABLE hosts (
	name              TEXT    PRIMARY KEY,
	cert_serial       TEXT    NOT NULL,
	cert_fingerprint  TEXT    NOT NULL,
	enrolled_ns       INTEGER NOT NULL,
	last_seen_ns      INTEGER,
	revoked_ns        INTEGER,
	realized_revision INTEGER NOT NULL DEFAULT 0,
	realized_digest   BLOB,
	last_error        TEXT    NOT NULL DEFAULT ''
);

CREATE TABLE bootstrap_tokens (
	id         TEXT    PRIMARY KEY,
	hash       BLOB    NOT NULL UNIQUE,
	host       TEXT    NOT NULL DEFAULT '',
	created_by TEXT    NOT NULL,
	created_ns INTEGER NOT NULL,
	expires_ns INTEGER NOT NULL,
	used_ns    INTEGER,
	used_by    TEXT
);
`,
	// 3: inventory sources (issue 5): what each source said about each
	// object (records), and the configured sources that are synced.
	`
CREATE TABLE inventory_records (
	source      TEXT    NOT NULL,
	key         TEXT    NOT NULL,
	kind        TEXT    NOT NULL,
	name        TEXT    NOT NULL,
	body        BLOB    NOT NULL,
	observed_ns INTEGER NOT NULL,
	seen_ns     INTEGER NOT NULL,
	PRIMARY KEY (source, key)
);
CREATE INDEX inventory_records_name ON inventory_records(name);

CREATE TABLE inventory_sources (
	name         TEXT    PRIMARY KEY,
	kind         TEXT    NOT NULL,
	url          TEXT    NOT NULL,
	user         TEXT    NOT NULL DEFAULT '',
	password     TEXT    NOT NULL DEFAULT '',
	insecure     INTEGER NOT NULL DEFAULT 0,
	interval_ns  INTEGER NOT NULL,
	created_ns   INTEGER NOT NULL,
	last_sync_ns INTEGER,
	last_error   TEXT    NOT NULL DEFAULT ''
);
`,
	// 4: user identity (issue 7): directory sources (LDAP/AD), their users,
	// groups and direct memberships (replaced whole per sync), and login
	// sessions (who is at an address or a port range of it, and when).
	`
CREATE TABLE directory_sources (
	name         TEXT    PRIMARY KEY,
	url          TEXT    NOT NULL,
	bind_dn      TEXT    NOT NULL DEFAULT '',
	password     TEXT    NOT NULL DEFAULT '',
	base_dn      TEXT    NOT NULL,
	user_filter  TEXT    NOT NULL DEFAULT '',
	group_filter TEXT    NOT NULL DEFAULT '',
	start_tls    INTEGER NOT NULL DEFAULT 0,
	insecure     INTEGER NOT NULL DEFAULT 0,
	interval_ns  INTEGER NOT NULL,
	created_ns   INTEGER NOT NULL,
	last_sync_ns INTEGER,
	last_error   TEXT    NOT NULL DEFAULT ''
);

CREATE TABLE directory_users (
	source  TEXT NOT NULL,
	name    TEXT NOT NULL,
	dn      TEXT NOT NULL,
	display TEXT NOT NULL,
	PRIMARY KEY (source, name)
);

CREATE TABLE directory_groups (
	source TEXT NOT NULL,
	name   TEXT NOT NULL,
	dn     TEXT NOT NULL,
	PRIMARY KEY (source, name)
);

-- Direct members only: kind 'user' or 'group' (nesting); the manager
-- resolves nesting when it loads the directory.
CREATE TABLE directory_members (
	source TEXT NOT NULL,
	grp    TEXT NOT NULL,
	kind   TEXT NOT NULL CHECK (kind IN ('user', 'group')),
	member TEXT NOT NULL,
	PRIMARY KEY (source, grp, kind, member)
);

CREATE TABLE identity_sessions (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	user     TEXT    NOT NULL,
	domain   TEXT    NOT NULL DEFAULT '',
	ip       TEXT    NOT NULL,
	port_lo  INTEGER NOT NULL DEFAULT 0,
	port_hi  INTEGER NOT NULL DEFAULT 0,
	start_ns INTEGER NOT NULL,
	end_ns   INTEGER,
	source   TEXT    NOT NULL,
	logon_id TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX identity_sessions_end ON identity_sessions(end_ns);
`,
	// 5: IDS signature sets (issue 8): every imported version of a rule
	// file, its text gzip'd; a deleted set keeps its rows (deleted_ns) so
	// that a set imported again under the name never reuses a version.
	`
CREATE TABLE ids_signature_sets (
	name       TEXT    NOT NULL,
	version    INTEGER NOT NULL,
	created_ns INTEGER NOT NULL,
	author     TEXT    NOT NULL,
	sha256     TEXT    NOT NULL,
	rules      INTEGER NOT NULL,
	problems   INTEGER NOT NULL,
	body       BLOB    NOT NULL,
	deleted_ns INTEGER,
	PRIMARY KEY (name, version)
);
`,
}
