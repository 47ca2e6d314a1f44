import { useDeferredValue, useMemo, useState, type FormEvent } from "react";
import { call, get, post } from "../api";
import { forgetMembers, groupMembers, num } from "../analysis";
import { ErrorBox, Page, Tags, useLoad, when } from "../common";
import type { Session } from "../App";
import type { Conflict, Fact, Group, GroupMembers, InventoryResult, Source, SourceRequest, Workload, WorkloadFacts } from "../types";

// A group's members as the manager's evaluator resolves them; failures
// are per group, so one bad group does not hide the others.
async function loadInventory() {
  forgetMembers();
  const [workloads, groups] = await Promise.all([get<Workload[]>("/resources/workloads"), get<Group[]>("/resources/groups")]);
  const members = await Promise.all(
    groups.map((g) => groupMembers(g.metadata.name, 0).then((m): GroupMembers | Error => m, (e: Error) => e)),
  );
  return { workloads, groups, members: new Map(groups.map((g, i) => [g.metadata.name, members[i]])) };
}

const shownMembers = 12;

// A data center has thousands of workloads: the table shows a page of
// the ones the filter keeps, and more on request.
const pageRows = 100;

function Members({ m }: { m?: GroupMembers | Error }) {
  if (!m) return <span className="muted">…</span>;
  if (m instanceof Error) return <span className="error-text">{m.message}</span>;
  const names = m.workloads.map((w) => w.name);
  const extra = [...m.addresses, ...(m.users ?? []).map((u) => `user ${u}`), ...(m.fqdns ?? [])];
  if (names.length === 0 && extra.length === 0) return <span className="muted">none</span>;
  return (
    <span data-testid="members">
      <strong>{names.length}</strong> workload{names.length === 1 ? "" : "s"}
      {names.length > 0 && ": "}
      {names.slice(0, shownMembers).join(", ")}
      {names.length > shownMembers && ` and ${names.length - shownMembers} more`}
      {extra.length > 0 && <div className="mono muted">{extra.join(", ")}</div>}
    </span>
  );
}

// searchText is what the filter box matches: name, addresses, host,
// tags as key=value, OS.
function searchText(w: Workload): string {
  const tags = Object.entries(w.spec.tags ?? {}).map(([k, v]) => `${k}=${v}`);
  return [w.metadata.name, ...w.spec.ips, w.spec.host ?? "", ...tags, w.spec.os ?? ""].join(" ").toLowerCase();
}

// matches keeps a workload when every word of the filter is in its text.
function matches(text: string, words: string[]) {
  return words.every((w) => text.includes(w));
}

// The workload a deep link (/inventory/NAME) selects.
function linked(path: string): string | null {
  const m = path.match(/^\/inventory\/([^/]+)$/);
  return m ? decodeURIComponent(m[1]) : null;
}

export function Inventory({ session, path, go }: { session: Session; path: string; go: (to: string) => void }) {
  const data = useLoad(loadInventory);
  const sources = useLoad(() => get<Source[]>("/sources"));
  const conflicts = useLoad(() => get<Conflict[]>("/inventory/conflicts"));
  const { workloads, groups, members } = data.data ?? { workloads: [], groups: [], members: new Map() };
  const [filter, setFilter] = useState("");
  const deferred = useDeferredValue(filter);
  const [rows, setRows] = useState(pageRows);
  const selected = linked(path);
  const select = (name: string | null) => go(name ? `/inventory/${encodeURIComponent(name)}` : "/inventory");

  const indexed = useMemo(() => workloads.map((w) => ({ w, text: searchText(w) })), [workloads]);
  const kept = useMemo(() => {
    const words = deferred.toLowerCase().split(/\s+/).filter(Boolean);
    return words.length ? indexed.filter((x) => matches(x.text, words)).map((x) => x.w) : workloads;
  }, [indexed, workloads, deferred]);
  const shown = kept.slice(0, rows);

  const reloadAll = () => {
    data.reload();
    sources.reload();
    conflicts.reload();
  };

  return (
    <Page title="Inventory" actions={<button onClick={reloadAll}>Refresh</button>}>
      <ErrorBox error={data.error} />
      <h2>Workloads ({num(workloads.length)})</h2>
      {workloads.length === 0 && !data.loading && <p className="empty">No workloads yet: agents report them, or apply Workload documents.</p>}
      <div className="inventory-split">
        <div>
          {workloads.length > 0 && (
            <div className="toolbar row">
              <input
                aria-label="Filter workloads"
                placeholder="name, address, host or tag (app=shop)"
                value={filter}
                size={40}
                onChange={(e) => {
                  setFilter(e.target.value);
                  setRows(pageRows);
                }}
              />
              <span className="muted" data-testid="workload-count">
                {kept.length === workloads.length ? `${num(kept.length)} workloads` : `${num(kept.length)} of ${num(workloads.length)} match`}
                {shown.length < kept.length && `, first ${num(shown.length)} shown`}
              </span>
            </div>
          )}
          {shown.length > 0 && (
            <table data-testid="workloads" className="clickable">
              <thead>
                <tr>
                  <th>Workload</th>
                  <th>Addresses</th>
                  <th>Host</th>
                  <th>Tags</th>
                  <th>OS</th>
                  <th>Facts</th>
                </tr>
              </thead>
              <tbody>
                {shown.map((w) => (
                  <tr
                    key={w.metadata.name}
                    data-workload={w.metadata.name}
                    className={w.metadata.name === selected ? "selected" : ""}
                    onClick={() => select(w.metadata.name === selected ? null : w.metadata.name)}
                  >
                    <td>
                      <strong>{w.metadata.name}</strong>
                      {w.metadata.description && <div className="muted">{w.metadata.description}</div>}
                    </td>
                    <td className="mono">{w.spec.ips.join(", ")}</td>
                    <td>
                      {w.spec.host || <span className="muted">none</span>}
                      {w.spec.interface && <div className="muted mono">{w.spec.interface}</div>}
                    </td>
                    <td>
                      <Tags tags={w.spec.tags} />
                    </td>
                    <td>{w.spec.os || <span className="muted">unknown</span>}</td>
                    <td>
                      <Tags tags={w.spec.facts} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {shown.length < kept.length && (
            <p>
              <button onClick={() => setRows((r) => r + pageRows * 5)}>Show {num(Math.min(pageRows * 5, kept.length - shown.length))} more</button>
            </p>
          )}
          {workloads.length > 0 && kept.length === 0 && <p className="muted">No workload matches “{deferred}”.</p>}
        </div>
        {selected && <FactsPanel key={selected} name={selected} onClose={() => select(null)} />}
      </div>

      <h2>Conflicts ({conflicts.data?.length ?? "…"})</h2>
      <p className="muted">
        Where sources disagree: an address claimed for two workloads, two values of one tag or attribute. The first claim
        is the one used, and each says why.
      </p>
      <ErrorBox error={conflicts.error} />
      {conflicts.data && conflicts.data.length === 0 && <p className="muted">Every source agrees.</p>}
      {conflicts.data && conflicts.data.length > 0 && <Conflicts conflicts={conflicts.data} onSelect={select} />}

      <h2>Sources ({sources.data?.length ?? "…"})</h2>
      <p className="muted">
        Where workloads and their tags come from besides agents and operators: CMDB imports (<code>bulkhead import cmdb</code>) and vCenter
        servers the manager syncs.
      </p>
      <ErrorBox error={sources.error} />
      {sources.data && <Sources sources={sources.data} canEdit={session.canEdit} onChanged={reloadAll} />}

      <h2>Groups ({groups.length})</h2>
      <p className="muted">
        Members are live: the manager's evaluator resolves each group against the current inventory, nesting included,
        as it does when it decides flows.
      </p>
      {groups.length > 0 && (
        <table data-testid="groups">
          <thead>
            <tr>
              <th>Group</th>
              <th>Members</th>
              <th>Tag expression</th>
              <th>Addresses</th>
              <th>Nested groups</th>
              <th>Users, FQDNs</th>
            </tr>
          </thead>
          <tbody>
            {groups.map((g) => (
              <tr key={g.metadata.name}>
                <td>
                  <strong>{g.metadata.name}</strong>
                  {g.metadata.description && <div className="muted">{g.metadata.description}</div>}
                </td>
                <td>
                  <Members m={members.get(g.metadata.name)} />
                </td>
                <td className="mono">{g.spec.match || <span className="muted">none</span>}</td>
                <td className="mono">{(g.spec.ips ?? []).join(", ") || <span className="muted">none</span>}</td>
                <td>{(g.spec.groups ?? []).join(", ") || <span className="muted">none</span>}</td>
                <td>
                  {[...(g.spec.users ?? []), ...(g.spec.directoryGroups ?? []), ...(g.spec.fqdns ?? [])].join(", ") || (
                    <span className="muted">none</span>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}

// FactSource says who says it and how old it is: "cmdb (cmdb), 3d4h ago".
function FactSource({ f }: { f: Fact }) {
  return (
    <>
      <strong>{f.source}</strong>
      {f.kind !== f.source && <span className="muted"> ({f.kind})</span>}
      <div className="muted">
        {f.age ? `${f.age} ago` : "live"}
        {f.stale && <span className="badge warn">stale</span>}
      </div>
    </>
  );
}

// FactsPanel shows every fact sources give about one workload, the used
// ones first for each attribute, with the reason the merge gave.
function FactsPanel({ name, onClose }: { name: string; onClose: () => void }) {
  const facts = useLoad(() => get<WorkloadFacts>(`/workloads/${encodeURIComponent(name)}/facts`), [name]);
  const d = facts.data;
  const list = useMemo(
    () =>
      [...(d?.facts ?? [])].sort(
        (a, b) => a.attribute.localeCompare(b.attribute) || Number(b.used) - Number(a.used) || a.source.localeCompare(b.source),
      ),
    [d],
  );
  const sources = [...new Set(list.map((f) => f.source))].sort();
  return (
    <aside className="side" data-testid="workload-facts" data-workload={name}>
      <div className="side-head">
        <h2>{name}</h2>
        <button className="link" onClick={onClose} aria-label="Close facts">
          ✕
        </button>
      </div>
      <ErrorBox error={facts.error} />
      {facts.loading && <p className="muted">Loading…</p>}
      {d && (
        <>
          {!d.exists && <p className="notice">Not a workload: sources name it, but the merge made no workload of it (see the reasons).</p>}
          <p className="muted" data-testid="fact-sources">
            Sources: {sources.join(", ") || "none"}
          </p>
          <table className="compact" data-testid="facts">
            <thead>
              <tr>
                <th>Attribute</th>
                <th>Value</th>
                <th>Source</th>
                <th>Used</th>
              </tr>
            </thead>
            <tbody>
              {list.map((f, i) => (
                <tr key={i} data-attribute={f.attribute} data-source={f.source} className={f.used ? "" : "unused"}>
                  <td className="mono">{f.attribute}</td>
                  <td className="mono">{f.value}</td>
                  <td>
                    <FactSource f={f} />
                  </td>
                  <td>
                    <span className={f.used ? "badge good" : "badge bad"}>{f.used ? "used" : "not used"}</span>
                    <div className="muted why">{f.reason}</div>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </aside>
  );
}

function Conflicts({ conflicts, onSelect }: { conflicts: Conflict[]; onSelect: (name: string) => void }) {
  return (
    <table data-testid="conflicts">
      <thead>
        <tr>
          <th>Subject</th>
          <th>Used</th>
          <th>Not used</th>
        </tr>
      </thead>
      <tbody>
        {conflicts.map((c) => {
          const [won, ...lost] = c.claims;
          const claim = (f: Fact) => (
            <div key={`${f.source}/${f.workload}/${f.value}`} className="claim">
              <span className="mono">{f.value}</span>
              {" for "}
              <button className="link" onClick={() => onSelect(f.workload)}>
                {f.workload}
              </button>
              {" from "}
              <strong>{f.source}</strong>
              <span className="muted">
                {" "}
                ({f.kind}
                {f.age ? `, ${f.age} ago` : ", live"})
              </span>
              <div className="muted why">{f.reason}</div>
            </div>
          );
          return (
            <tr key={c.subject} data-subject={c.subject}>
              <td className="mono">{c.subject}</td>
              <td>{won && claim(won)}</td>
              <td>{lost.map(claim)}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

// summary says in one line what an import, a sync or a removal did.
function summary(verb: string, r: InventoryResult) {
  const parts = [
    `${r.newRecords} new, ${r.changedRecords} changed, ${r.unchangedRecords} unchanged, ${r.removedRecords} removed records`,
    `workloads ${r.created.length} created, ${r.updated.length} updated, ${r.deleted.length} deleted`,
    `${r.conflicts.length} conflict${r.conflicts.length === 1 ? "" : "s"}`,
  ];
  if (r.skipped?.length) parts.push(`${r.skipped.length} skipped`);
  return `${verb} ${r.source}: ${parts.join("; ")}`;
}

// ownActions: the sources GET /sources lists that /sources syncs and
// deletes (CMDB imports and vCenter servers); others, like directory
// sources, have their own API.
const ownActions = (s: Source) => s.kind === "vcenter" || s.kind === "cmdb";

function Sources({ sources, canEdit, onChanged }: { sources: Source[]; canEdit: boolean; onChanged: () => void }) {
  const [busy, setBusy] = useState<string | null>(null);
  const [confirm, setConfirm] = useState<string | null>(null);
  const [done, setDone] = useState<{ text: string; skipped?: string[] } | null>(null);
  const [error, setError] = useState<unknown>(null);

  const act = async (name: string, verb: string, fn: () => Promise<InventoryResult>) => {
    setBusy(name);
    setError(null);
    setDone(null);
    try {
      const r = await fn();
      setDone({ text: summary(verb, r), skipped: r.skipped });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(null);
      setConfirm(null);
      onChanged();
    }
  };
  const sync = (name: string) => act(name, "Synced", () => post<InventoryResult>(`/sources/${encodeURIComponent(name)}/sync`, undefined));
  const remove = (name: string) => act(name, "Removed", () => call<InventoryResult>("DELETE", `/sources/${encodeURIComponent(name)}`));

  return (
    <>
      <ErrorBox error={error} />
      {done && (
        <p className="notice" role="status" data-testid="source-result">
          {done.text}
          {done.skipped && done.skipped.length > 0 && <span className="muted"> ({done.skipped.slice(0, 3).join("; ")})</span>}
        </p>
      )}
      {sources.length === 0 && <p className="muted">No source yet: only agents and operators describe workloads.</p>}
      {sources.length > 0 && (
        <table data-testid="sources">
          <thead>
            <tr>
              <th>Source</th>
              <th>Where</th>
              <th>Records</th>
              <th>Last sync</th>
              {canEdit && <th />}
            </tr>
          </thead>
          <tbody>
            {sources.map((s) => (
              <tr key={s.name} data-source={s.name}>
                <td>
                  <strong>{s.name}</strong> <span className="badge">{s.kind}</span>
                </td>
                <td>
                  {s.url ? <span className="mono">{s.url}</span> : <span className="muted">imported files</span>}
                  {s.user && <div className="muted">as {s.user}{s.insecure && ", certificate not checked"}</div>}
                  {s.configured && <div className="muted">{s.interval === "0s" ? "synced on request" : `every ${s.interval}`}</div>}
                </td>
                <td className="num" data-testid="records">
                  {num(s.records)}
                </td>
                <td>
                  {s.configured ? when(s.lastSync) : <span className="muted">not synced</span>}
                  {s.lastError && <div className="error-text" data-testid="last-error">{s.lastError}</div>}
                </td>
                {canEdit && (
                  <td className="row-actions">
                    {s.configured && s.kind === "vcenter" && (
                      <button onClick={() => sync(s.name)} disabled={busy !== null} aria-label={`Sync ${s.name}`}>
                        {busy === s.name ? "Syncing…" : "Sync now"}
                      </button>
                    )}
                    {!ownActions(s) ? (
                      <span className="muted">managed elsewhere</span>
                    ) : confirm === s.name ? (
                      <>
                        <button className="primary danger" onClick={() => remove(s.name)} disabled={busy !== null}>
                          Confirm delete
                        </button>
                        <button onClick={() => setConfirm(null)}>Cancel</button>
                      </>
                    ) : (
                      <button onClick={() => setConfirm(s.name)} disabled={busy !== null} aria-label={`Delete ${s.name}`}>
                        Delete…
                      </button>
                    )}
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {confirm && (
        <p className="muted">
          Deleting {confirm} removes its records; workloads only it described are deleted, the others lose what it said.
        </p>
      )}
      {canEdit && <AddVCenter onAdded={onChanged} />}
    </>
  );
}

// AddVCenter configures a vCenter source; the manager syncs it every
// interval, or on "Sync now".
function AddVCenter({ onAdded }: { onAdded: () => void }) {
  const blank: SourceRequest = { name: "", kind: "vcenter", url: "", user: "", password: "", insecure: false, interval: "15m" };
  const [form, setForm] = useState<SourceRequest>(blank);
  const [open, setOpen] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [added, setAdded] = useState<string | null>(null);
  const set = (k: keyof SourceRequest) => (e: { target: { value: string } }) => setForm((f) => ({ ...f, [k]: e.target.value }));

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    try {
      const s = await post<Source>("/sources", { ...form, user: form.user || undefined, password: form.password || undefined });
      setAdded(s.name);
      setForm(blank);
      setOpen(false);
      onAdded();
    } catch (err) {
      setError(err);
    }
  };

  if (!open) {
    return (
      <p>
        <button onClick={() => setOpen(true)}>+ Add vCenter source</button>
        {added && (
          <span className="muted" role="status">
            {" "}
            Added {added}: use Sync now, or wait for its interval.
          </span>
        )}
      </p>
    );
  }
  return (
    <form className="source-form" onSubmit={submit} data-testid="add-source">
      <h3>Add a vCenter source</h3>
      <ErrorBox error={error} />
      <label>
        Name <input aria-label="Source name" value={form.name} onChange={set("name")} placeholder="vc1" required />
      </label>
      <label>
        URL <input aria-label="vCenter URL" value={form.url} onChange={set("url")} placeholder="https://vcenter.example/sdk" size={36} required />
      </label>
      <label>
        User <input aria-label="vCenter user" value={form.user} onChange={set("user")} autoComplete="off" />
      </label>
      <label>
        Password <input aria-label="vCenter password" type="password" value={form.password} onChange={set("password")} autoComplete="new-password" />
      </label>
      <label>
        Sync every <input aria-label="Sync interval" value={form.interval} onChange={set("interval")} size={6} />
        <span className="muted"> (0: only on request)</span>
      </label>
      <label>
        <input type="checkbox" checked={!!form.insecure} onChange={(e) => setForm((f) => ({ ...f, insecure: e.target.checked }))} /> Do not check
        its certificate
      </label>
      <div className="row">
        <button className="primary" type="submit">
          Add source
        </button>
        <button type="button" onClick={() => setOpen(false)}>
          Cancel
        </button>
      </div>
    </form>
  );
}
