// The IDS/IPS page: alerts agents raised (Suricata EVE records), the
// IDSProfile objects and imported signature sets, and which signatures
// inspect one workload. Read-only for every role: profiles are edited as
// policy documents, signature sets imported with `bulkhead ids import`.
import { useEffect, useMemo, useState } from "react";
import { get } from "../api";
import { sinceParam, type Since } from "../analysis";
import { ErrorBox, Page, useLoad, when, WindowPicker } from "../common";
import type { EVEAlert, IDSProfile, IDSSignatures, IDSSignatureSet, IDSSignatureFilter, Workload } from "../types";

type Tab = "alerts" | "profiles" | "workloads";

const tabs: { tab: Tab; path: string; label: string }[] = [
  { tab: "alerts", path: "/ids", label: "Alerts" },
  { tab: "profiles", path: "/ids/profiles", label: "Profiles & signature sets" },
  { tab: "workloads", path: "/ids/workloads", label: "Per workload" },
];

// route reads the tab and the workload a deep link (/ids/workloads/NAME)
// selects.
function route(path: string): { tab: Tab; workload: string | null } {
  const m = path.match(/^\/ids\/workloads(?:\/([^/]+))?$/);
  if (m) return { tab: "workloads", workload: m[1] ? decodeURIComponent(m[1]) : null };
  if (path === "/ids/profiles") return { tab: "profiles", workload: null };
  return { tab: "alerts", workload: null };
}

export function IDSPage({ path, go }: { path: string; go: (to: string) => void }) {
  const { tab, workload } = route(path);
  const workloads = useLoad(() => get<Workload[]>("/resources/workloads"));
  const names = useMemo(() => (workloads.data ?? []).map((w) => w.metadata.name).sort(), [workloads.data]);
  return (
    <Page title="IDS/IPS">
      <nav className="tabs" role="tablist" aria-label="IDS views">
        {tabs.map((t) => (
          <a
            key={t.tab}
            href={t.path}
            role="tab"
            aria-selected={t.tab === tab}
            className={t.tab === tab ? "active" : ""}
            onClick={(e) => {
              e.preventDefault();
              go(t.path);
            }}
          >
            {t.label}
          </a>
        ))}
      </nav>
      <ErrorBox error={workloads.error} />
      {tab === "alerts" && <Alerts workloads={names} />}
      {tab === "profiles" && <Profiles />}
      {tab === "workloads" && (
        <PerWorkload
          workloads={names}
          selected={workload}
          select={(w) => go(w ? `/ids/workloads/${encodeURIComponent(w)}` : "/ids/workloads")}
        />
      )}
    </Page>
  );
}

// EVE writes "2026-03-01T12:00:00.123456+0000"; Date wants the offset with
// a colon and at most milliseconds.
function eveTime(t: string): string {
  const iso = t.replace(/(\.\d{3})\d+/, "$1").replace(/([+-]\d\d)(\d\d)$/, "$1:$2");
  return when(iso);
}

const severities = [
  { value: 0, label: "Any severity" },
  { value: 1, label: "1 (high) only" },
  { value: 2, label: "2 or worse" },
  { value: 3, label: "3 or worse" },
];

function Severity({ n }: { n: number }) {
  const label = n === 1 ? "high" : n === 2 ? "medium" : n === 3 ? "low" : "info";
  return (
    <span className={`badge sev sev-${n >= 1 && n <= 3 ? n : 4}`} title={`severity ${n} (1 is the worst)`}>
      {n} {label}
    </span>
  );
}

// end is one side of an alert: the workload's name when the inventory
// knows the address, else ip:port.
function end(ip: string, port: number | undefined, workload?: string) {
  const addr = port ? (ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`) : ip;
  if (!workload) return <span className="mono">{addr}</span>;
  return (
    <span title={addr}>
      <strong>{workload}</strong>
      {port ? <span className="muted">:{port}</span> : null}
    </span>
  );
}

function alertKey(a: EVEAlert) {
  return `${a.timestamp}|${a.src_ip}|${a.src_port}|${a.dest_ip}|${a.dest_port}|${a.alert.gid}:${a.alert.signature_id}`;
}

const refreshEvery = 10_000;
const alertLimit = 500;

function Alerts({ workloads }: { workloads: string[] }) {
  const [since, setSince] = useState<Since>("24h");
  const [severity, setSeverity] = useState(0);
  const [workload, setWorkload] = useState("");
  const [sidText, setSidText] = useState("");
  const [auto, setAuto] = useState(true);
  const [selected, setSelected] = useState<EVEAlert | null>(null);
  const sid = /^\d+$/.test(sidText.trim()) ? sidText.trim() : "";
  const sidBad = sidText.trim() !== "" && !sid;

  const query = useMemo(() => {
    const q = new URLSearchParams({ since: sinceParam(since), limit: String(alertLimit) });
    if (severity) q.set("severity", String(severity));
    if (workload) q.set("workload", workload);
    if (sid) q.set("sid", sid);
    return q.toString();
  }, [since, severity, workload, sid]);
  const alerts = useLoad(() => get<EVEAlert[]>(`/ids/alerts?${query}`), [query]);
  const { reload } = alerts;
  useEffect(() => {
    if (!auto) return;
    const id = setInterval(reload, refreshEvery);
    return () => clearInterval(id);
  }, [auto, reload]);

  const list = alerts.data ?? [];
  const blocked = list.filter((a) => a.alert.action === "blocked").length;
  const selectedKey = selected ? alertKey(selected) : "";
  const seen = new Map<string, number>();

  return (
    <>
      <div className="toolbar row" data-testid="alert-filters">
        <WindowPicker value={since} onChange={setSince} />
        <select aria-label="Severity" value={severity} onChange={(e) => setSeverity(Number(e.target.value))}>
          {severities.map((s) => (
            <option key={s.value} value={s.value}>
              {s.label}
            </option>
          ))}
        </select>
        <select aria-label="Workload" value={workload} onChange={(e) => setWorkload(e.target.value)}>
          <option value="">Any workload</option>
          {workloads.map((w) => (
            <option key={w} value={w}>
              {w}
            </option>
          ))}
        </select>
        <input
          aria-label="Signature id"
          placeholder="sid"
          size={10}
          inputMode="numeric"
          className={sidBad ? "invalid" : ""}
          value={sidText}
          onChange={(e) => setSidText(e.target.value)}
        />
        <label className="row">
          <input type="checkbox" checked={auto} onChange={(e) => setAuto(e.target.checked)} /> Refresh every 10 s
        </label>
        <button onClick={reload}>Refresh</button>
        <span className="muted" data-testid="alert-count">
          {alerts.data
            ? `${list.length} alert${list.length === 1 ? "" : "s"}${list.length === alertLimit ? ` (newest ${alertLimit})` : ""}, ${blocked} blocked`
            : "…"}
        </span>
      </div>
      {sidBad && <p className="error-text">A signature id is a number.</p>}
      <ErrorBox error={alerts.error} />
      {alerts.data && list.length === 0 && (
        <p className="empty">No alert in this window{severity || workload || sid ? " with these filters" : ""}.</p>
      )}
      <div className="inventory-split">
        {list.length > 0 && (
          <div>
            <table data-testid="alerts" className="clickable compact">
              <thead>
                <tr>
                  <th>Time</th>
                  <th>Severity</th>
                  <th>Action</th>
                  <th>SID</th>
                  <th>Signature</th>
                  <th>Source → destination</th>
                  <th>App</th>
                  <th>Host</th>
                </tr>
              </thead>
              <tbody>
                {list.map((a) => {
                  const key = alertKey(a);
                  // Two matches of one rule on one packet are two rows.
                  const n = (seen.get(key) ?? 0) + 1;
                  seen.set(key, n);
                  return (
                    <tr
                      key={`${key}#${n}`}
                      data-sid={a.alert.signature_id}
                      className={key === selectedKey ? "selected" : ""}
                      onClick={() => setSelected(key === selectedKey ? null : a)}
                    >
                      <td className="num">{eveTime(a.timestamp)}</td>
                      <td>
                        <Severity n={a.alert.severity} />
                      </td>
                      <td>
                        <span className={`action ids-${a.alert.action}`}>{a.alert.action}</span>
                      </td>
                      <td className="num mono">{a.alert.signature_id}</td>
                      <td>
                        {a.alert.signature}
                        {a.alert.category && <div className="muted">{a.alert.category}</div>}
                      </td>
                      <td>
                        {end(a.src_ip, a.src_port, a.bulkhead?.src_workload)} → {end(a.dest_ip, a.dest_port, a.bulkhead?.dest_workload)}
                        <div className="muted">{a.proto}</div>
                      </td>
                      <td>{a.app_proto || <span className="muted">none</span>}</td>
                      <td>
                        {a.bulkhead?.host || <span className="muted">unknown</span>}
                        {a.bulkhead?.mode && <div className="muted">{a.bulkhead.mode}</div>}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
        {selected && <AlertDetail alert={selected} onClose={() => setSelected(null)} />}
      </div>
    </>
  );
}

// AlertDetail is one alert's whole EVE record, as the manager stored it.
function AlertDetail({ alert, onClose }: { alert: EVEAlert; onClose: () => void }) {
  const b = alert.bulkhead ?? {};
  return (
    <aside className="side" data-testid="alert-detail">
      <div className="side-head">
        <h2>
          sid {alert.alert.signature_id} <span className="muted">rev {alert.alert.rev}</span>
        </h2>
        <button className="link" onClick={onClose}>
          Close
        </button>
      </div>
      <p>
        <strong>{alert.alert.signature}</strong>
      </p>
      <dl className="facts">
        <dt>Time</dt>
        <dd>{eveTime(alert.timestamp)}</dd>
        <dt>Action</dt>
        <dd>
          <span className={`action ids-${alert.alert.action}`}>{alert.alert.action}</span>
          {b.mode && <span className="muted"> ({b.mode} mode)</span>}
        </dd>
        <dt>Profile</dt>
        <dd>{b.profile || <span className="muted">none</span>}</dd>
        <dt>Host, interface</dt>
        <dd>
          {b.host || "unknown"}
          {b.interface && <span className="mono">, {b.interface}</span>}
        </dd>
      </dl>
      <h3>EVE record</h3>
      <pre className="eve" data-testid="eve-json">
        {JSON.stringify(alert, null, 2)}
      </pre>
    </aside>
  );
}

// filterSummary says in words which signatures a profile chooses.
function filterSummary(f?: IDSSignatureFilter): string[] {
  if (!f) return [];
  const out: string[] = [];
  if (f.maxSeverity) out.push(`severity ≤ ${f.maxSeverity}`);
  if (f.classtypes?.length) out.push(`classtype ${f.classtypes.join(", ")}`);
  if (f.excludeClasstypes?.length) out.push(`not classtype ${f.excludeClasstypes.join(", ")}`);
  for (const [k, vs] of Object.entries(f.metadata ?? {}).sort(([a], [b]) => a.localeCompare(b))) out.push(`${k}: ${vs.join(" | ")}`);
  if (f.cves?.length) out.push(`CVE ${f.cves.join(", ")}`);
  if (f.sids?.length) out.push(`plus sids ${f.sids.join(", ")}`);
  if (f.excludeSids?.length) out.push(`minus sids ${f.excludeSids.join(", ")}`);
  if (f.signatureSets?.length) out.push(`from ${f.signatureSets.join(", ")}`);
  return out;
}

// blocksWith says which signatures a prevent profile enforces.
function blocksWith(action?: string): string {
  if (action === "drop" || action === "reject") return `blocks with every chosen signature (${action})`;
  return "blocks with drop/reject signatures";
}

function ModeBadge({ mode }: { mode?: string }) {
  if (!mode) return <span className="muted">none</span>;
  return <span className={`badge ${mode === "prevent" ? "bad" : "warn"}`}>{mode}</span>;
}

function Profiles() {
  const profiles = useLoad(() => get<IDSProfile[]>("/resources/idsprofiles"));
  const sets = useLoad(() => get<IDSSignatureSet[]>("/ids/signature-sets"));
  return (
    <>
      <p className="muted">
        Profiles choose signatures for the workloads of their groups and say whether drop signatures block (prevent) or
        only alert (detect). They are policy documents: change them with <code>bulkhead apply</code>; import signature
        sets with <code>bulkhead ids import FILE.rules --name NAME</code>.
      </p>
      <h2>Profiles ({profiles.data?.length ?? "…"})</h2>
      <ErrorBox error={profiles.error} />
      {profiles.data?.length === 0 && <p className="empty">No IDSProfile yet: nothing is inspected.</p>}
      {profiles.data && profiles.data.length > 0 && (
        <table data-testid="ids-profiles">
          <thead>
            <tr>
              <th>Profile</th>
              <th>Mode</th>
              <th>Applied to</th>
              <th>Signatures</th>
              <th>Workload-aware</th>
            </tr>
          </thead>
          <tbody>
            {profiles.data.map((p) => {
              const filter = filterSummary(p.spec.signatures);
              return (
                <tr key={p.metadata.name} data-profile={p.metadata.name}>
                  <td>
                    <strong>{p.metadata.name}</strong>
                    {p.metadata.description && <div className="muted">{p.metadata.description}</div>}
                  </td>
                  <td>
                    <ModeBadge mode={p.spec.mode} />
                    {p.spec.mode === "prevent" && <div className="muted">{blocksWith(p.spec.preventAction)}</div>}
                  </td>
                  <td>{p.spec.appliedTo?.length ? p.spec.appliedTo.join(", ") : <span className="muted">every workload</span>}</td>
                  <td>
                    {filter.length ? (
                      <span className="tags">
                        {filter.map((f) => (
                          <span className="tag" key={f}>
                            {f}
                          </span>
                        ))}
                      </span>
                    ) : (
                      <span className="muted">all</span>
                    )}
                  </td>
                  <td>{p.spec.workloadAware === false ? "no" : "yes"}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      <h2>Signature sets ({sets.data?.length ?? "…"})</h2>
      <ErrorBox error={sets.error} />
      {sets.data?.length === 0 && <p className="empty">No signature set imported yet.</p>}
      {sets.data && sets.data.length > 0 && (
        <table data-testid="ids-sets">
          <thead>
            <tr>
              <th>Set</th>
              <th>Version</th>
              <th>Rules loaded</th>
              <th>Problems</th>
              <th>Imported</th>
              <th>SHA-256</th>
            </tr>
          </thead>
          <tbody>
            {sets.data.map((s) => (
              <tr key={s.name} data-set={s.name}>
                <td>
                  <strong>{s.name}</strong>
                </td>
                <td className="num">v{s.version}</td>
                <td className="num">
                  {s.rules.toLocaleString()}
                  {s.shadowed ? <div className="muted">{s.shadowed} shadowed by another set</div> : null}
                </td>
                <td className="num">
                  {s.problems > 0 ? <span className="badge warn">{s.problems.toLocaleString()}</span> : <span className="muted">0</span>}
                </td>
                <td>
                  {when(s.created)}
                  <div className="muted">by {s.author}</div>
                </td>
                <td className="mono" title={s.sha256}>
                  {s.sha256.slice(0, 12)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {sets.data && sets.data.some((s) => s.problems > 0) && (
        <p className="muted">
          Problems are rules that did not load (an unsupported keyword, a PCRE RE2 cannot run, ...): <code>bulkhead ids import</code> lists
          each with its sid and reason.
        </p>
      )}
    </>
  );
}

// A workload may be inspected by tens of thousands of signatures: the
// table shows a page of those the filter keeps.
const signatureRows = 200;

function PerWorkload({ workloads, selected, select }: { workloads: string[]; selected: string | null; select: (w: string | null) => void }) {
  return (
    <>
      <div className="toolbar row">
        <label className="muted" htmlFor="ids-workload">
          Workload
        </label>
        <select id="ids-workload" aria-label="Inspect workload" value={selected ?? ""} onChange={(e) => select(e.target.value || null)}>
          <option value="">Pick a workload…</option>
          {workloads.map((w) => (
            <option key={w} value={w}>
              {w}
            </option>
          ))}
          {selected && !workloads.includes(selected) && <option value={selected}>{selected}</option>}
        </select>
      </div>
      {selected ? (
        <WorkloadSignatures key={selected} name={selected} />
      ) : (
        <p className="muted">Pick a workload to see which signatures inspect it, in which mode, and which ones were left out and why.</p>
      )}
    </>
  );
}

function WorkloadSignatures({ name }: { name: string }) {
  const sigs = useLoad(() => get<IDSSignatures>(`/ids/signatures?workload=${encodeURIComponent(name)}`), [name]);
  const [filter, setFilter] = useState("");
  const [rows, setRows] = useState(signatureRows);
  const d = sigs.data;
  const kept = useMemo(() => {
    const all = d?.signatures ?? [];
    const w = filter.trim().toLowerCase();
    if (!w) return all;
    return all.filter((s) => String(s.sid) === w || s.msg.toLowerCase().includes(w) || (s.classtype ?? "").includes(w));
  }, [d, filter]);
  const left = d?.leftOut ?? [];
  if (sigs.error) return <ErrorBox error={sigs.error} />;
  if (!d) return <p className="muted">Loading…</p>;
  const f = d.facts;
  return (
    <div data-testid="workload-ids">
      <dl className="facts">
        <dt>Mode</dt>
        <dd data-testid="workload-mode">
          <ModeBadge mode={d.mode} />
          {!d.mode && <span className="muted"> no profile applies: not inspected</span>}
        </dd>
        <dt>Profiles</dt>
        <dd data-testid="workload-profiles">{d.profiles?.length ? d.profiles.join(", ") : <span className="muted">none</span>}</dd>
        <dt>Host, interface</dt>
        <dd>
          {d.host || <span className="muted">no host</span>}
          {d.interface && <span className="mono">, {d.interface}</span>}
        </dd>
        <dt>What it runs</dt>
        <dd>
          {f ? (
            <>
              OS {f.os || "unknown"}; {f.rolesKnown ? `roles ${(f.roles ?? []).join(", ")}` : "roles unknown"}
              {f.rolesFrom && <span className="muted"> (from {f.rolesFrom})</span>}
              {f.served?.length ? <div className="muted mono">serves {f.served.join(", ")}</div> : null}
            </>
          ) : (
            <span className="muted">unknown</span>
          )}
        </dd>
      </dl>
      <h2>
        Inspecting signatures: <span data-testid="signature-count">{d.signatures.length.toLocaleString()}</span>
        {d.signatures.some((s) => s.enforced) && (
          <span className="muted"> ({d.signatures.filter((s) => s.enforced).length.toLocaleString()} block)</span>
        )}
      </h2>
      {d.signatures.length > 0 && (
        <>
          <div className="toolbar row">
            <input
              aria-label="Filter signatures"
              placeholder="sid, message or classtype"
              size={36}
              value={filter}
              onChange={(e) => {
                setFilter(e.target.value);
                setRows(signatureRows);
              }}
            />
            <span className="muted">
              {kept.length === d.signatures.length ? "" : `${kept.length.toLocaleString()} match`}
              {kept.length > rows && `, first ${rows} shown`}
            </span>
          </div>
          <table data-testid="workload-signatures" className="compact">
            <thead>
              <tr>
                <th>SID</th>
                <th>Signature</th>
                <th>Action</th>
                <th>Priority</th>
                <th>Set</th>
                <th>Profiles</th>
              </tr>
            </thead>
            <tbody>
              {kept.slice(0, rows).map((s) => (
                <tr key={`${s.set}/${s.sid}`} data-sid={s.sid}>
                  <td className="num mono">{s.sid}</td>
                  <td>
                    {s.msg}
                    {s.classtype && <div className="muted">{s.classtype}</div>}
                  </td>
                  <td>
                    {s.action} <span className="muted">{s.proto}</span>
                    {s.enforced && <span className="badge bad">blocks ({s.enforced})</span>}
                  </td>
                  <td className="num">{s.priority}</td>
                  <td>{s.set}</td>
                  <td>{(s.profiles ?? []).join(", ")}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {kept.length > rows && (
            <p>
              <button onClick={() => setRows((r) => r + signatureRows * 5)}>Show more</button>
            </p>
          )}
        </>
      )}
      <h2>
        Left out: <span data-testid="leftout-count">{left.length.toLocaleString()}</span>
      </h2>
      <p className="muted">Signatures a profile chose that the workload-aware step dropped: they target something this workload does not run.</p>
      {left.length > 0 && (
        <table data-testid="workload-leftout" className="compact">
          <thead>
            <tr>
              <th>SID</th>
              <th>Signature</th>
              <th>Profile</th>
              <th>Why</th>
            </tr>
          </thead>
          <tbody>
            {left.slice(0, signatureRows).map((l) => (
              <tr key={`${l.profile}/${l.sid}`} data-sid={l.sid}>
                <td className="num mono">{l.sid}</td>
                <td>{l.msg}</td>
                <td>{l.profile}</td>
                <td className="why">{l.reason}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {left.length > signatureRows && <p className="muted">First {signatureRows} of {left.length.toLocaleString()} shown.</p>}
    </div>
  );
}
