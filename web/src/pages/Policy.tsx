import { useMemo, useState } from "react";
import { apply, get } from "../api";
import { DiffText, ErrorBox, Page, useLoad } from "../common";
import type { Session } from "../App";
import { categories, type Action, type Change, type Direction, type Mode, type Policy, type PolicySet, type Revision, type RevisionDetail, type Rule } from "../types";

interface Published {
  revision: number; // 0 before the first apply
  set: PolicySet;
}

async function loadPublished(): Promise<Published> {
  const revs = await get<Revision[]>("/revisions?limit=1");
  if (revs.length === 0) return { revision: 0, set: {} };
  const d = await get<RevisionDetail>(`/revisions/${revs[0].number}`);
  return { revision: d.number, set: d.set };
}

// ordered sorts sections as the evaluator walks them: category, priority, name.
function ordered(ps: Policy[]): Policy[] {
  return [...ps].sort(
    (a, b) =>
      categories.indexOf(a.spec.category) - categories.indexOf(b.spec.category) ||
      (a.spec.priority ?? 0) - (b.spec.priority ?? 0) ||
      a.metadata.name.localeCompare(b.metadata.name),
  );
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const list = (v?: string[]) => (v && v.length ? v.join(", ") : "any");

export function PolicyPage({ session }: { session: Session }) {
  const published = useLoad(loadPublished);
  const [draft, setDraft] = useState<Record<string, Policy> | null>(null);
  const [editing, setEditing] = useState<{ policy: string; index: number; rule: Rule } | null>(null);
  const [changes, setChanges] = useState<Change[] | null>(null);
  const [summary, setSummary] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState("");
  const [busy, setBusy] = useState(false);

  const base = published.data;
  const current = draft ?? base?.set.policies ?? {};
  const changed = useMemo(
    () => (draft && base ? Object.keys(draft).filter((n) => !same(draft[n], base.set.policies?.[n])) : []),
    [draft, base],
  );

  // update edits one section of the draft; the draft starts as a copy of the
  // published sections.
  const update = (name: string, fn: (p: Policy) => void) => {
    const next = structuredClone(current);
    fn(next[name]);
    setDraft(next);
    setChanges(null);
    setNotice("");
  };

  const move = (name: string, i: number, by: number) =>
    update(name, (p) => {
      const [r] = p.spec.rules.splice(i, 1);
      p.spec.rules.splice(i + by, 0, r);
    });

  const discard = () => {
    setDraft(null);
    setEditing(null);
    setChanges(null);
    setError(null);
  };

  const run = async (fn: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    try {
      await fn();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const showDiff = () =>
    run(async () => {
      const r = await apply(changed.map((n) => current[n]), { dryRun: true });
      setChanges(r.changes);
    });

  const publish = () =>
    run(async () => {
      // Refuse to publish over a revision this draft has not seen: the user
      // would overwrite it without knowing.
      const head = await get<Revision[]>("/revisions?limit=1");
      const headNumber = head[0]?.number ?? 0;
      if (base && headNumber !== base.revision) {
        throw new Error(
          `revision ${headNumber} was published since you loaded revision ${base.revision}: discard your draft and edit again`,
        );
      }
      const r = await apply(changed.map((n) => current[n]), { summary: summary.trim() });
      setDraft(null);
      setChanges(null);
      setSummary("");
      setNotice(`Published revision ${r.revision} (${r.changes.length} change${r.changes.length === 1 ? "" : "s"}).`);
      published.reload();
    });

  const sections = ordered(Object.values(current));
  const ids = base?.set.ruleIDs ?? {};

  return (
    <Page
      title="Policy"
      actions={
        <>
          {base && (
            <span className="muted" data-testid="published-revision">
              published revision r{base.revision}
            </span>
          )}
          <button onClick={published.reload} disabled={!!draft}>
            Refresh
          </button>
        </>
      }
    >
      {!session.canEdit && (
        <p className="readonly" data-testid="readonly">
          Read-only: the {session.role} role can look at policy but not change it.
        </p>
      )}
      <ErrorBox error={published.error} />
      {notice && (
        <p className="notice" role="status">
          {notice}
        </p>
      )}
      {session.canEdit && changed.length > 0 && (
        <div className="draft" data-testid="draft">
          <div>
            <strong>Draft:</strong> {changed.length} section{changed.length === 1 ? "" : "s"} changed ({changed.join(", ")}),
            not published.
          </div>
          <div className="row">
            <button onClick={showDiff} disabled={busy}>
              Diff against r{base?.revision}
            </button>
            <input
              aria-label="Summary"
              placeholder="Summary (optional)"
              value={summary}
              onChange={(e) => setSummary(e.target.value)}
            />
            <button className="primary" onClick={publish} disabled={busy}>
              Publish
            </button>
            <button className="link" onClick={discard} disabled={busy}>
              Discard draft
            </button>
          </div>
          <ErrorBox error={error} />
          {changes && (
            <div className="changes" data-testid="changes">
              {changes.length === 0 && <p className="muted">No change against the published revision.</p>}
              {changes.map((c) => (
                <div key={c.Kind + c.Name}>
                  <h3>
                    {c.Kind} {c.Name} <span className={`op op-${c.Op}`}>{c.Op}</span>
                  </h3>
                  <DiffText text={c.Diff} />
                </div>
              ))}
            </div>
          )}
        </div>
      )}
      {!session.canEdit || changed.length === 0 ? <ErrorBox error={error} /> : null}
      {base && sections.length === 0 && <p className="empty">No policy yet: apply Policy documents with bulkhead apply.</p>}
      {categories.map((cat) => {
        const inCat = sections.filter((p) => p.spec.category === cat);
        if (inCat.length === 0) return null;
        return (
          <div key={cat} className="category">
            <h2>{cat}</h2>
            {inCat.map((p) => (
              <div key={p.metadata.name} className="section" data-testid={`section-${p.metadata.name}`}>
                <h3>
                  {p.metadata.name}
                  {changed.includes(p.metadata.name) && <span className="badge warn">edited</span>}
                  <span className="muted">
                    {" "}
                    priority {p.spec.priority ?? 0} · applied to {p.spec.appliedTo?.length ? p.spec.appliedTo.join(", ") : "every workload"}
                  </span>
                </h3>
                {p.metadata.description && <p className="muted">{p.metadata.description}</p>}
                <table className="rules">
                  <thead>
                    <tr>
                      <th>#</th>
                      <th>Id</th>
                      <th>Rule</th>
                      <th>Sources</th>
                      <th>Destinations</th>
                      <th>Services</th>
                      <th>Action</th>
                      <th>Direction</th>
                      <th>Mode</th>
                      {session.canEdit && <th aria-label="Edit" />}
                    </tr>
                  </thead>
                  <tbody>
                    {p.spec.rules.map((r, i) =>
                      editing && editing.policy === p.metadata.name && editing.index === i ? (
                        <RuleEditor
                          key={i}
                          rule={editing.rule}
                          onChange={(rule) => setEditing({ ...editing, rule })}
                          onCancel={() => setEditing(null)}
                          onSave={() => {
                            update(p.metadata.name, (q) => {
                              q.spec.rules[i] = clean(editing.rule);
                            });
                            setEditing(null);
                          }}
                        />
                      ) : (
                        <tr key={i} data-rule={r.name}>
                          <td className="num">{i + 1}</td>
                          <td className="num muted">{ids[`${p.metadata.name}/${r.name}`] ?? "new"}</td>
                          <td>
                            <strong>{r.name}</strong>
                            {r.log && <span className="badge">log</span>}
                            {r.profiles?.length ? <div className="muted">profiles: {r.profiles.join(", ")}</div> : null}
                            {r.description && <div className="muted">{r.description}</div>}
                          </td>
                          <td>{list(r.sources)}</td>
                          <td>{list(r.destinations)}</td>
                          <td className="mono">{list(r.services)}</td>
                          <td>
                            <span className={`action action-${r.action}`}>{r.action}</span>
                          </td>
                          <td>{r.direction || "inout"}</td>
                          <td>{r.mode === "staged" ? <span className="badge warn">staged</span> : "enforce"}</td>
                          {session.canEdit && (
                            <td className="row-actions">
                              <button aria-label={`Move ${r.name} up`} disabled={i === 0 || !!editing} onClick={() => move(p.metadata.name, i, -1)}>
                                ↑
                              </button>
                              <button
                                aria-label={`Move ${r.name} down`}
                                disabled={i === p.spec.rules.length - 1 || !!editing}
                                onClick={() => move(p.metadata.name, i, 1)}
                              >
                                ↓
                              </button>
                              <button aria-label={`Edit ${r.name}`} disabled={!!editing} onClick={() => setEditing({ policy: p.metadata.name, index: i, rule: structuredClone(r) })}>
                                Edit
                              </button>
                              <button
                                aria-label={`Delete ${r.name}`}
                                disabled={!!editing || p.spec.rules.length === 1}
                                title={p.spec.rules.length === 1 ? "a section needs at least one rule" : undefined}
                                onClick={() => update(p.metadata.name, (q) => void q.spec.rules.splice(i, 1))}
                              >
                                Delete
                              </button>
                            </td>
                          )}
                        </tr>
                      ),
                    )}
                  </tbody>
                </table>
                {session.canEdit && (
                  <button
                    className="link"
                    disabled={!!editing}
                    onClick={() => {
                      const names = new Set(p.spec.rules.map((r) => r.name));
                      let n = 1;
                      while (names.has(`new-rule-${n}`)) n++;
                      const rule: Rule = { name: `new-rule-${n}`, action: "allow" };
                      update(p.metadata.name, (q) => void q.spec.rules.push(rule));
                      setEditing({ policy: p.metadata.name, index: p.spec.rules.length, rule });
                    }}
                  >
                    + Add rule to {p.metadata.name}
                  </button>
                )}
              </div>
            ))}
          </div>
        );
      })}
      {base?.set.default && (
        <div className="category">
          <h2>Default rule</h2>
          <p data-testid="default-rule">
            A flow no rule matches is{" "}
            <span className={`action action-${base.set.default.spec.action}`}>{base.set.default.spec.action}</span>
            {base.set.default.spec.log ? " and logged" : ""} (rule id 1).
          </p>
        </div>
      )}
    </Page>
  );
}

// clean drops empty optional fields so that an untouched field does not show
// up as a change in the diff.
function clean(r: Rule): Rule {
  const out: Rule = { name: r.name.trim(), action: r.action };
  if (r.description?.trim()) out.description = r.description.trim();
  for (const k of ["sources", "destinations", "services", "profiles"] as const) {
    const v = (r[k] ?? []).map((s) => s.trim()).filter(Boolean);
    if (v.length) out[k] = v;
  }
  if (r.direction && r.direction !== "inout") out.direction = r.direction;
  if (r.log) out.log = true;
  if (r.mode && r.mode !== "enforce") out.mode = r.mode;
  return out;
}

const split = (s: string) => s.split(",").map((x) => x.trim());

function RuleEditor({ rule, onChange, onSave, onCancel }: { rule: Rule; onChange: (r: Rule) => void; onSave: () => void; onCancel: () => void }) {
  const field = (k: "sources" | "destinations" | "services" | "profiles", label: string) => (
    <label>
      {label}
      <input
        aria-label={label}
        value={(rule[k] ?? []).join(", ")}
        placeholder="any"
        onChange={(e) => onChange({ ...rule, [k]: split(e.target.value) })}
      />
    </label>
  );
  return (
    <tr className="editor">
      <td colSpan={10}>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            onSave();
          }}
        >
          <div className="grid">
            <label>
              Name
              <input aria-label="Name" value={rule.name} onChange={(e) => onChange({ ...rule, name: e.target.value })} required />
            </label>
            <label>
              Description
              <input aria-label="Description" value={rule.description ?? ""} onChange={(e) => onChange({ ...rule, description: e.target.value })} />
            </label>
            {field("sources", "Sources")}
            {field("destinations", "Destinations")}
            {field("services", "Services")}
            {field("profiles", "Profiles")}
            <label>
              Action
              <select aria-label="Action" value={rule.action} onChange={(e) => onChange({ ...rule, action: e.target.value as Action })}>
                <option>allow</option>
                <option>drop</option>
                <option>reject</option>
              </select>
            </label>
            <label>
              Direction
              <select aria-label="Direction" value={rule.direction ?? "inout"} onChange={(e) => onChange({ ...rule, direction: e.target.value as Direction })}>
                <option>inout</option>
                <option>in</option>
                <option>out</option>
              </select>
            </label>
            <label>
              Mode
              <select aria-label="Mode" value={rule.mode ?? "enforce"} onChange={(e) => onChange({ ...rule, mode: e.target.value as Mode })}>
                <option>enforce</option>
                <option>staged</option>
              </select>
            </label>
            <label className="check">
              <input type="checkbox" checked={!!rule.log} onChange={(e) => onChange({ ...rule, log: e.target.checked })} /> Log
            </label>
          </div>
          <p className="muted">Sources and destinations: group names or IPs/CIDRs; services: Service names or port specs such as tcp/443. Empty means any.</p>
          <div className="row">
            <button type="submit" className="primary">
              Keep in draft
            </button>
            <button type="button" className="link" onClick={onCancel}>
              Cancel
            </button>
          </div>
        </form>
      </td>
    </tr>
  );
}
