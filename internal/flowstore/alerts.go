package flowstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// IDS alerts live in flows.db beside the flows they were raised on: the same
// volume of writes from the same agents, the same retention, and never the
// policy store's lock.

// alertsSchema is migration step 6. Like every step it is never edited once
// released; a change is a new step.
//
// ts is the alert's time (Unix ns), hash identifies the alert among those
// of its time (Alert.ID): an agent resending a batch whose answer was lost
// stores nothing twice (the unique index on (ts, hash), which is also the
// time index: newest first, windows and retention).
const alertsSchema = `
CREATE TABLE alerts (
	ts           INTEGER NOT NULL,
	hash         BLOB    NOT NULL,
	host         TEXT    NOT NULL,
	sid          INTEGER NOT NULL,
	gid          INTEGER NOT NULL,
	rev          INTEGER NOT NULL,
	severity     INTEGER NOT NULL,
	action       TEXT    NOT NULL,
	signature    TEXT    NOT NULL,
	category     TEXT    NOT NULL,
	proto        TEXT    NOT NULL,
	app_proto    TEXT    NOT NULL,
	src_ip       BLOB    NOT NULL,
	src_port     INTEGER NOT NULL,
	dst_ip       BLOB    NOT NULL,
	dst_port     INTEGER NOT NULL,
	src_workload TEXT    NOT NULL,
	dst_workload TEXT    NOT NULL,
	flow_id      INTEGER NOT NULL,
	eve          TEXT    NOT NULL
);
CREATE UNIQUE INDEX alerts_id ON alerts(ts, hash);
CREATE INDEX alerts_sid ON alerts(sid, ts);
CREATE INDEX alerts_src_wl ON alerts(src_workload, ts);
CREATE INDEX alerts_dst_wl ON alerts(dst_workload, ts);
`

// Alert is one stored IDS alert: the columns the manager filters and counts
// by, taken from the record, and the Suricata EVE JSON record itself.
type Alert struct {
	Time time.Time
	// Host is the agent host that raised it.
	Host          string
	SID, GID, Rev uint32
	// Severity is 1 (the worst) to 4 or more, as in Suricata.
	Severity int
	// Action is EVE's alert.action: "allowed" or "blocked".
	Action              string
	Signature, Category string
	// Proto is EVE's proto ("TCP"), AppProto its app_proto ("http").
	Proto, AppProto          string
	Src, Dst                 netip.Addr
	SrcPort, DstPort         uint16
	SrcWorkload, DstWorkload string
	FlowID                   uint64
	// EVE is the record as JSON text, as the manager completed it.
	EVE []byte
	// ID identifies the alert among those of its time, so that one
	// received twice is stored once: the manager derives it from the
	// record as the agent sent it. Empty: derived from EVE.
	ID []byte
}

// AlertFilter selects alerts. Zero fields match everything.
type AlertFilter struct {
	// Since and Until bound the alert's time: Since <= t < Until.
	Since, Until time.Time
	// MaxSeverity keeps alerts with severity <= MaxSeverity (1 is the
	// worst, so 2 means "severity 1 or 2").
	MaxSeverity int
	// Workload keeps alerts with this workload at either end.
	Workload string
	SID      uint32
	Host     string
	// Limit caps QueryAlerts' answer; 0 means DefaultLimit, and it is
	// never more than MaxLimit. CountAlerts ignores it.
	Limit int
}

// AlertCount is how many alerts one pair of ends raised: workloads by name,
// and an end that is no workload by its address (zero when the end is a
// workload).
type AlertCount struct {
	SrcWorkload, DstWorkload string
	Src, Dst                 netip.Addr
	Alerts                   uint64
	// Worst is the lowest (worst) severity among them.
	Worst int
}

// AlertStore keeps IDS alerts.
type AlertStore interface {
	// InsertAlerts stores a batch in one transaction. An alert already
	// stored (same time and EVE record) is not stored again; an alert
	// without a time or EVE record is skipped and counted.
	InsertAlerts(ctx context.Context, alerts []Alert) error
	// QueryAlerts returns the alerts f selects, newest first.
	QueryAlerts(ctx context.Context, f AlertFilter) ([]Alert, error)
	// CountAlerts counts the alerts f selects per pair of ends.
	CountAlerts(ctx context.Context, f AlertFilter) ([]AlertCount, error)
	// PruneAlerts deletes what r no longer keeps, by the alerts' time, and
	// returns how many it deleted.
	PruneAlerts(ctx context.Context, r Retention) (int64, error)
}

var _ AlertStore = (*SQLite)(nil)

// MaxAlertRows is the alerts' row cap when pruning in the background:
// with their EVE records about 1.5 KB a row, some 3 GB.
const MaxAlertRows = 2_000_000

const alertColumns = "ts, hash, host, sid, gid, rev, severity, action, signature, category, proto, app_proto, " +
	"src_ip, src_port, dst_ip, dst_port, src_workload, dst_workload, flow_id, eve"

// alertInsertRows bounds one INSERT statement: 100 x 20 parameters.
const alertInsertRows = 100

// alertKey is the stored form of an alert's ID: at most 16 bytes.
func alertKey(a *Alert) []byte {
	if len(a.ID) > 0 && len(a.ID) <= 16 {
		return a.ID
	}
	id := a.ID
	if len(id) == 0 {
		id = a.EVE
	}
	sum := sha256.Sum256(id)
	return sum[:16]
}

// InsertAlerts stores a batch in one transaction.
func (s *SQLite) InsertAlerts(ctx context.Context, alerts []Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("flowstore: insert %d alerts: %w", len(alerts), err)
	}
	defer tx.Rollback()
	row := "(?" + strings.Repeat(", ?", 19) + ")"
	var (
		args []any
		rows int
	)
	flush := func() error {
		if rows == 0 {
			return nil
		}
		q := "INSERT INTO alerts (" + alertColumns + ") VALUES " + row + strings.Repeat(", "+row, rows-1) +
			" ON CONFLICT (ts, hash) DO NOTHING"
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("flowstore: insert %d alerts: %w", len(alerts), err)
		}
		args, rows = args[:0], 0
		return nil
	}
	for i := range alerts {
		a := &alerts[i]
		if a.Time.IsZero() || len(a.EVE) == 0 {
			s.skipped.Add(1)
			continue
		}
		args = append(args, a.Time.UnixNano(), alertKey(a), a.Host,
			int64(a.SID), int64(a.GID), int64(a.Rev), int64(a.Severity), a.Action, a.Signature, a.Category,
			a.Proto, a.AppProto, addrOrEmpty(a.Src), int64(a.SrcPort), addrOrEmpty(a.Dst), int64(a.DstPort),
			a.SrcWorkload, a.DstWorkload, int64(a.FlowID), string(a.EVE))
		rows++
		if rows == alertInsertRows {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("flowstore: insert %d alerts: %w", len(alerts), err)
	}
	return nil
}

// addrOrEmpty is addrKey, or no bytes for a missing address.
func addrOrEmpty(a netip.Addr) []byte {
	if !a.IsValid() {
		return []byte{}
	}
	return addrKey(a)
}

// alertWhere is f as a WHERE clause (with its leading space, or empty) and
// its arguments.
func alertWhere(f AlertFilter) (string, []any, error) {
	var (
		where []string
		args  []any
	)
	if f.MaxSeverity < 0 {
		return "", nil, fmt.Errorf("flowstore: alert severity %d: %w", f.MaxSeverity, ErrInvalid)
	}
	if !f.Since.IsZero() {
		where = append(where, "ts >= ?")
		args = append(args, f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		where = append(where, "ts < ?")
		args = append(args, f.Until.UnixNano())
	}
	if f.MaxSeverity > 0 {
		where = append(where, "severity <= ?")
		args = append(args, int64(f.MaxSeverity))
	}
	if f.Workload != "" {
		where = append(where, "(src_workload = ? OR dst_workload = ?)")
		args = append(args, f.Workload, f.Workload)
	}
	if f.SID != 0 {
		where = append(where, "sid = ?")
		args = append(args, int64(f.SID))
	}
	if f.Host != "" {
		where = append(where, "host = ?")
		args = append(args, f.Host)
	}
	if len(where) == 0 {
		return "", args, nil
	}
	return " WHERE " + strings.Join(where, " AND "), args, nil
}

// QueryAlerts returns matching alerts, newest first.
func (s *SQLite) QueryAlerts(ctx context.Context, f AlertFilter) ([]Alert, error) {
	if f.Limit < 0 {
		return nil, fmt.Errorf("flowstore: limit %d: %w", f.Limit, ErrInvalid)
	}
	if f.Limit == 0 {
		f.Limit = DefaultLimit
	}
	f.Limit = min(f.Limit, MaxLimit)
	where, args, err := alertWhere(f)
	if err != nil {
		return nil, err
	}
	q := "SELECT " + alertColumns + " FROM alerts" + where + " ORDER BY ts DESC LIMIT ?"
	rows, err := s.r.QueryContext(ctx, q, append(args, f.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("flowstore: query alerts: %w", err)
	}
	defer rows.Close()
	var out []Alert
	for rows.Next() {
		var (
			a                                    Alert
			ts, sid, gid, rev, sev, sport, dport int64
			flowID                               int64
			hash, src, dst                       []byte
			eve                                  string
		)
		if err := rows.Scan(&ts, &hash, &a.Host, &sid, &gid, &rev, &sev, &a.Action, &a.Signature, &a.Category,
			&a.Proto, &a.AppProto, &src, &sport, &dst, &dport, &a.SrcWorkload, &a.DstWorkload, &flowID, &eve); err != nil {
			return nil, fmt.Errorf("flowstore: query alerts: %w", err)
		}
		a.Time = time.Unix(0, ts).UTC()
		a.SID, a.GID, a.Rev, a.Severity = uint32(sid), uint32(gid), uint32(rev), int(sev)
		a.Src, a.Dst = addrFromKey(src), addrFromKey(dst)
		a.SrcPort, a.DstPort = uint16(sport), uint16(dport)
		a.FlowID, a.EVE = uint64(flowID), []byte(eve)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("flowstore: query alerts: %w", err)
	}
	return out, nil
}

// CountAlerts counts matching alerts per pair of ends: an end that is a
// workload by its name, else by its address.
func (s *SQLite) CountAlerts(ctx context.Context, f AlertFilter) ([]AlertCount, error) {
	where, args, err := alertWhere(f)
	if err != nil {
		return nil, err
	}
	q := `SELECT src_workload, CASE WHEN src_workload = '' THEN src_ip ELSE x'' END AS s,
	dst_workload, CASE WHEN dst_workload = '' THEN dst_ip ELSE x'' END AS d,
	count(*), min(severity)
FROM alerts` + where + `
GROUP BY src_workload, s, dst_workload, d`
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("flowstore: count alerts: %w", err)
	}
	defer rows.Close()
	var out []AlertCount
	for rows.Next() {
		var (
			c        AlertCount
			src, dst []byte
			n, worst int64
		)
		if err := rows.Scan(&c.SrcWorkload, &src, &c.DstWorkload, &dst, &n, &worst); err != nil {
			return nil, fmt.Errorf("flowstore: count alerts: %w", err)
		}
		c.Src, c.Dst, c.Alerts, c.Worst = addrFromKey(src), addrFromKey(dst), uint64(n), int(worst)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("flowstore: count alerts: %w", err)
	}
	return out, nil
}

// PruneAlerts deletes alerts older than now-MaxAge, then the oldest beyond
// MaxRows, in chunks.
func (s *SQLite) PruneAlerts(ctx context.Context, r Retention) (int64, error) {
	var total int64
	if r.MaxAge > 0 {
		n, err := s.deleteAlertsBefore(ctx, time.Now().Add(-r.MaxAge).UnixNano())
		total += n
		if err != nil {
			return total, err
		}
	}
	if r.MaxRows > 0 {
		var cut int64
		err := s.r.QueryRowContext(ctx, "SELECT ts FROM alerts ORDER BY ts DESC LIMIT 1 OFFSET ?", r.MaxRows-1).Scan(&cut)
		if errors.Is(err, sql.ErrNoRows) {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("flowstore: prune alerts to %d rows: %w", r.MaxRows, err)
		}
		n, err := s.deleteAlertsBefore(ctx, cut)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (s *SQLite) deleteAlertsBefore(ctx context.Context, cut int64) (int64, error) {
	var total int64
	for {
		res, err := s.w.ExecContext(ctx, "DELETE FROM alerts WHERE rowid IN (SELECT rowid FROM alerts WHERE ts < ? ORDER BY ts LIMIT ?)", cut, pruneChunk)
		if err != nil {
			return total, fmt.Errorf("flowstore: prune alerts before %s: %w", fromNanos(cut).Format(time.RFC3339), err)
		}
		n, _ := res.RowsAffected()
		total += n
		if n < pruneChunk {
			return total, nil
		}
	}
}
