package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/bulkhead/bulkhead/internal/directory"
)

// DirectorySource is a configured LDAP / Active Directory source that the
// manager syncs users and groups from.
type DirectorySource struct {
	Name        string
	URL         string
	BindDN      string
	Password    string // never leaves the manager
	BaseDN      string
	UserFilter  string
	GroupFilter string
	StartTLS    bool
	Insecure    bool
	Interval    time.Duration
	Created     time.Time
	LastSync    time.Time // zero before the first attempt
	LastError   string
}

// IdentityStore keeps directory sources, what their syncs read, and login
// sessions. *SQLite implements it.
type IdentityStore interface {
	// DirectorySources lists the configured directory sources by name.
	DirectorySources(ctx context.Context) ([]DirectorySource, error)
	// DirectorySource returns one; ErrNotFound if unknown.
	DirectorySource(ctx context.Context, name string) (DirectorySource, error)
	// CreateDirectorySource adds one; ErrConflict if any source (inventory
	// or directory) has the name.
	CreateDirectorySource(ctx context.Context, src DirectorySource, audit []AuditEntry) (DirectorySource, error)
	// DeleteDirectorySource removes a source with its users and groups.
	DeleteDirectorySource(ctx context.Context, name string, audit []AuditEntry) error
	// RecordDirectorySync notes a sync attempt: its time and error.
	RecordDirectorySync(ctx context.Context, name string, at time.Time, syncErr string) error
	// ReplaceDirectory replaces a source's users, groups and memberships
	// in one transaction with the audit entries.
	ReplaceDirectory(ctx context.Context, source string, users []directory.User, groups []directory.Group, audit []AuditEntry) error
	// Directory reads the users and groups of every source.
	Directory(ctx context.Context) ([]directory.User, []directory.Group, error)

	// SaveSessions inserts sessions with ID 0 (setting their ID) and
	// updates the others, in one transaction.
	SaveSessions(ctx context.Context, ss []*directory.Session) error
	// Sessions lists the open sessions and those that ended at or after
	// since, oldest first.
	Sessions(ctx context.Context, since time.Time) ([]directory.Session, error)
}

var _ IdentityStore = (*SQLite)(nil)

const directorySourceColumns = "name, url, bind_dn, password, base_dn, user_filter, group_filter, start_tls, insecure, interval_ns, created_ns, last_sync_ns, last_error"

func scanDirectorySource(row scanner) (DirectorySource, error) {
	var (
		src               DirectorySource
		interval, created int64
		last              sql.NullInt64
	)
	if err := row.Scan(&src.Name, &src.URL, &src.BindDN, &src.Password, &src.BaseDN, &src.UserFilter, &src.GroupFilter,
		&src.StartTLS, &src.Insecure, &interval, &created, &last, &src.LastError); err != nil {
		return DirectorySource{}, err
	}
	src.Interval, src.Created = time.Duration(interval), fromNanos(created)
	if last.Valid {
		src.LastSync = fromNanos(last.Int64)
	}
	return src, nil
}

// DirectorySources lists the configured directory sources by name.
func (s *SQLite) DirectorySources(ctx context.Context) ([]DirectorySource, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+directorySourceColumns+" FROM directory_sources ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("store: list directory sources: %w", err)
	}
	defer rows.Close()
	var out []DirectorySource
	for rows.Next() {
		src, err := scanDirectorySource(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list directory sources: %w", err)
		}
		out = append(out, src)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list directory sources: %w", err)
	}
	return out, nil
}

// DirectorySource returns one configured directory source.
func (s *SQLite) DirectorySource(ctx context.Context, name string) (DirectorySource, error) {
	src, err := scanDirectorySource(s.r.QueryRowContext(ctx, "SELECT "+directorySourceColumns+" FROM directory_sources WHERE name = ?", name))
	if errors.Is(err, sql.ErrNoRows) {
		return DirectorySource{}, fmt.Errorf("store: directory source %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return DirectorySource{}, fmt.Errorf("store: directory source %q: %w", name, err)
	}
	return src, nil
}

func insertAudit(ctx context.Context, tx *sql.Tx, now int64, audit []AuditEntry) error {
	for i, a := range audit {
		if a.Action == "" {
			return fmt.Errorf("audit entry #%d: no action: %w", i, ErrInvalid)
		}
		if _, err := tx.ExecContext(ctx,
			"INSERT INTO audit (time_ns, actor, action, object, revision, diff) VALUES (?, ?, ?, ?, ?, ?)",
			now, a.Actor, a.Action, a.Object, nullIfZero(a.Revision), a.Diff); err != nil {
			return fmt.Errorf("audit entry #%d (%s %s): %w", i, a.Action, a.Object, err)
		}
	}
	return nil
}

// CreateDirectorySource adds a directory source; the name must be free
// among inventory sources and imports too, since sources share one list.
func (s *SQLite) CreateDirectorySource(ctx context.Context, src DirectorySource, audit []AuditEntry) (DirectorySource, error) {
	op := fmt.Sprintf("store: create directory source %q", src.Name)
	if src.Name == "" || src.URL == "" || src.BaseDN == "" || src.Interval < 0 {
		return DirectorySource{}, fmt.Errorf("%s (url %q, base DN %q, interval %s): %w", op, src.URL, src.BaseDN, src.Interval, ErrInvalid)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return DirectorySource{}, fmt.Errorf("%s: %w", op, err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx,
		`SELECT (SELECT COUNT(*) FROM inventory_sources WHERE name = ?) + (SELECT COUNT(*) FROM inventory_records WHERE source = ?)
		      + (SELECT COUNT(*) FROM directory_sources WHERE name = ?)`,
		src.Name, src.Name, src.Name).Scan(&n); err != nil {
		return DirectorySource{}, fmt.Errorf("%s: %w", op, err)
	}
	if n > 0 {
		return DirectorySource{}, fmt.Errorf("%s: the name is taken: %w", op, ErrConflict)
	}
	now := s.now()
	src.Created = fromNanos(toNanos(now))
	src.LastSync, src.LastError = time.Time{}, ""
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO directory_sources (name, url, bind_dn, password, base_dn, user_filter, group_filter, start_tls, insecure, interval_ns, created_ns)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		src.Name, src.URL, src.BindDN, src.Password, src.BaseDN, src.UserFilter, src.GroupFilter, src.StartTLS, src.Insecure,
		int64(src.Interval), toNanos(src.Created)); err != nil {
		return DirectorySource{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := insertAudit(ctx, tx, toNanos(now), audit); err != nil {
		return DirectorySource{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := tx.Commit(); err != nil {
		return DirectorySource{}, fmt.Errorf("%s: %w", op, err)
	}
	return src, nil
}

// deleteDirectoryData removes what a source's syncs wrote.
func deleteDirectoryData(ctx context.Context, tx *sql.Tx, source string) error {
	for _, table := range []string{"directory_users", "directory_groups", "directory_members"} {
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+table+" WHERE source = ?", source); err != nil {
			return fmt.Errorf("clear %s: %w", table, err)
		}
	}
	return nil
}

// DeleteDirectorySource removes a source, its users and groups.
func (s *SQLite) DeleteDirectorySource(ctx context.Context, name string, audit []AuditEntry) error {
	op := fmt.Sprintf("store: delete directory source %q", name)
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, "DELETE FROM directory_sources WHERE name = ?", name)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	} else if n == 0 {
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if err := deleteDirectoryData(ctx, tx, name); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := insertAudit(ctx, tx, toNanos(s.now()), audit); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// RecordDirectorySync notes a sync attempt.
func (s *SQLite) RecordDirectorySync(ctx context.Context, name string, at time.Time, syncErr string) error {
	res, err := s.w.ExecContext(ctx, "UPDATE directory_sources SET last_sync_ns = ?, last_error = ? WHERE name = ?", toNanos(at), syncErr, name)
	if err != nil {
		return fmt.Errorf("store: record sync of directory source %q: %w", name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: record sync of directory source %q: %w", name, err)
	} else if n == 0 {
		return fmt.Errorf("store: record sync of directory source %q: %w", name, ErrNotFound)
	}
	return nil
}

// ReplaceDirectory writes a source's sync result in place of the last one.
func (s *SQLite) ReplaceDirectory(ctx context.Context, source string, users []directory.User, groups []directory.Group, audit []AuditEntry) error {
	op := fmt.Sprintf("store: directory of source %q", source)
	for i, u := range users {
		if u.Source != source || u.Name == "" {
			return fmt.Errorf("%s: user #%d (%s/%q): %w", op, i, u.Source, u.Name, ErrInvalid)
		}
	}
	for i, g := range groups {
		if g.Source != source || g.Name == "" {
			return fmt.Errorf("%s: group #%d (%s/%q): %w", op, i, g.Source, g.Name, ErrInvalid)
		}
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", op, err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM directory_sources WHERE name = ?", source).Scan(&n); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	} else if n == 0 {
		// Deleted while its sync ran: write nothing back.
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if err := deleteDirectoryData(ctx, tx, source); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	// OR IGNORE: a name read twice (a group listing a member twice) is
	// one row.
	for _, u := range users {
		if _, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO directory_users (source, name, dn, display) VALUES (?, ?, ?, ?)",
			source, u.Name, u.DN, u.Display); err != nil {
			return fmt.Errorf("%s: user %s: %w", op, u.Name, err)
		}
	}
	for _, g := range groups {
		if _, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO directory_groups (source, name, dn) VALUES (?, ?, ?)",
			source, g.Name, g.DN); err != nil {
			return fmt.Errorf("%s: group %s: %w", op, g.Name, err)
		}
		for _, m := range []struct {
			kind  string
			names []string
		}{{"user", g.Users}, {"group", g.Groups}} {
			for _, name := range m.names {
				if _, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO directory_members (source, grp, kind, member) VALUES (?, ?, ?, ?)",
					source, g.Name, m.kind, name); err != nil {
					return fmt.Errorf("%s: group %s: member %s: %w", op, g.Name, name, err)
				}
			}
		}
	}
	if err := insertAudit(ctx, tx, toNanos(s.now()), audit); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// Directory reads every source's users and groups with their direct
// members.
func (s *SQLite) Directory(ctx context.Context) ([]directory.User, []directory.Group, error) {
	const op = "store: read directory"
	var users []directory.User
	rows, err := s.r.QueryContext(ctx, "SELECT source, name, dn, display FROM directory_users ORDER BY source, name")
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", op, err)
	}
	for rows.Next() {
		var u directory.User
		if err := rows.Scan(&u.Source, &u.Name, &u.DN, &u.Display); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("%s: %w", op, err)
		}
		users = append(users, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", op, err)
	}

	var groups []directory.Group
	ix := map[[2]string]int{}
	rows, err = s.r.QueryContext(ctx, "SELECT source, name, dn FROM directory_groups ORDER BY source, name")
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", op, err)
	}
	for rows.Next() {
		var g directory.Group
		if err := rows.Scan(&g.Source, &g.Name, &g.DN); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("%s: %w", op, err)
		}
		ix[[2]string{g.Source, g.Name}] = len(groups)
		groups = append(groups, g)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", op, err)
	}

	rows, err = s.r.QueryContext(ctx, "SELECT source, grp, kind, member FROM directory_members ORDER BY source, grp, kind, member")
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", op, err)
	}
	defer rows.Close()
	for rows.Next() {
		var src, grp, kind, member string
		if err := rows.Scan(&src, &grp, &kind, &member); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", op, err)
		}
		i, ok := ix[[2]string{src, grp}]
		if !ok {
			continue
		}
		if kind == "user" {
			groups[i].Users = append(groups[i].Users, member)
		} else {
			groups[i].Groups = append(groups[i].Groups, member)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", op, err)
	}
	return users, groups, nil
}

// SaveSessions inserts new sessions and updates known ones.
func (s *SQLite) SaveSessions(ctx context.Context, ss []*directory.Session) error {
	const op = "store: save sessions"
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer tx.Rollback()
	ids := make([]int64, len(ss))
	for i, x := range ss {
		if x.User == "" || !x.IP.IsValid() || x.Start.IsZero() {
			return fmt.Errorf("%s: session #%d (%q at %s): %w", op, i, x.User, x.IP, ErrInvalid)
		}
		end := sql.NullInt64{Int64: toNanos(x.End), Valid: !x.End.IsZero()}
		if x.ID == 0 {
			err = tx.QueryRowContext(ctx,
				`INSERT INTO identity_sessions (user, domain, ip, port_lo, port_hi, start_ns, end_ns, source, logon_id)
				 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
				x.User, x.Domain, x.IP.String(), x.Ports.Lo, x.Ports.Hi, toNanos(x.Start), end, x.Source, x.LogonID).Scan(&ids[i])
		} else {
			ids[i] = x.ID
			_, err = tx.ExecContext(ctx, "UPDATE identity_sessions SET end_ns = ? WHERE id = ?", end, x.ID)
		}
		if err != nil {
			return fmt.Errorf("%s: session of %s at %s: %w", op, x.User, x.IP, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	for i, x := range ss {
		x.ID = ids[i]
	}
	return nil
}

// Sessions lists open sessions and those ended at or after since.
func (s *SQLite) Sessions(ctx context.Context, since time.Time) ([]directory.Session, error) {
	const op = "store: list sessions"
	rows, err := s.r.QueryContext(ctx,
		`SELECT id, user, domain, ip, port_lo, port_hi, start_ns, end_ns, source, logon_id FROM identity_sessions
		 WHERE end_ns IS NULL OR end_ns >= ? ORDER BY start_ns, id`, toNanos(since))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer rows.Close()
	var out []directory.Session
	for rows.Next() {
		var (
			x          directory.Session
			ip         string
			start      int64
			end        sql.NullInt64
			portLo, hi int
		)
		if err := rows.Scan(&x.ID, &x.User, &x.Domain, &ip, &portLo, &hi, &start, &end, &x.Source, &x.LogonID); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		if x.IP, err = netip.ParseAddr(ip); err != nil {
			return nil, fmt.Errorf("%s: session %d: ip %q: %w", op, x.ID, ip, err)
		}
		x.Ports = directory.PortRange{Lo: uint16(portLo), Hi: uint16(hi)}
		x.Start = fromNanos(start)
		if end.Valid {
			x.End = fromNanos(end.Int64)
		}
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return out, nil
}
