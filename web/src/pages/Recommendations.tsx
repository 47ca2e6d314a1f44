import { useEffect, useMemo, useState } from "react";
import { ApiError, get, post } from "../api";
import { ErrorBox, Page, WindowPicker, useLoad, when } from "../common";
import type { Session } from "../App";
import { bytes, forgetMembers, num, sinceParam, type Since } from "../analysis";
import { appId, scopeOf } from "../graph";
import type {
  Action, ApplyResponse, Group, MapResponse, Policy, RecommendResponse, Resource, Rule, WhatIfResponse, WireDocument,
} from "../types";

const actions: Action[] = ["allow", "drop", "reject"];

// Edits are what the user changed in the draft before applying it: rules
// left out and actions changed, by rule name.
interface Edits {
  removed: Set<string>;
  action: Record<string, Action>;
}

const noEdits = (): Edits => ({ removed: new Set(), action: {} });

// edited returns the draft's documents with the edits applied; staged
// makes the rules the recommendation added staged, as POST /recommend
// does with staged set.
function edited(docs: WireDocument[], e: Edits, added: Set<string>, staged: boolean): WireDocument[] {
  return docs.map((d) => {
    if (d.object.kind !== "Policy") return d;
    const p = structuredClone(d.object) as Policy;
    p.spec.rules = p.spec.rules
      .filter((r) => !e.removed.has(r.name))
      .map((r) => {
        const out: Rule = { ...r, action: e.action[r.name] ?? r.action };
        if (staged && added.has(r.name)) out.mode = "staged";
        return out;
      });
    return { ...d, object: p as Resource<string, unknown> };
  });
}

const list = (v?: string[]) => (v && v.length ? v.join(", ") : "any");

export function Recommendations({ session }: { session: Session }) {
  const apps = useLoad(() => get<MapResponse>("/map?level=app&since=7d"));
  // The whole data center by default: no cap on scope, and a choice made
  // before the app list arrives is never overridden.
  const [choice, setChoice] = useState("all()");
  const [custom, setCustom] = useState("");
  const [since, setSince] = useState<Since>("7d");
  const [draft, setDraft] = useState<{ scope: string; resp: RecommendResponse } | null>(null);
  const [edits, setEdits] = useState<Edits>(noEdits);
  const [whatIf, setWhatIf] = useState<{ data?: WhatIfResponse; error?: unknown; loading: boolean }>({ loading: false });
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [applied, setApplied] = useState<{ revision: number; changes: number; staged: boolean } | null>(null);

  const options = useMemo(
    () =>
      (apps.data?.nodes ?? [])
        .filter((n) => !n.external)
        .map((n) => ({ id: appId(n), scope: scopeOf(n, "app") }))
        .sort((a, b) => a.id.localeCompare(b.id)),
    [apps.data],
  );
  const scope = choice === "custom" ? custom.trim() : choice;

  const added = useMemo(() => new Set(draft?.resp.changes.added ?? []), [draft]);
  const docs = useMemo(() => (draft ? edited(draft.resp.documents, edits, added, false) : []), [draft, edits, added]);
  const isEdited = edits.removed.size > 0 || Object.keys(edits.action).length > 0;

  // The what-if follows the draft as edited: what it would have dropped
  // or newly allowed over the same window.
  useEffect(() => {
    if (!draft) return;
    let live = true;
    setWhatIf((w) => ({ ...w, loading: true }));
    post<WhatIfResponse>("/whatif", { documents: docs, since: sinceParam(since), level: "app", limit: 20 }).then(
      (data) => live && setWhatIf({ data, loading: false }),
      (error) => live && setWhatIf({ error, loading: false }),
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [docs]);

  const run = async () => {
    setBusy(true);
    setError(null);
    setApplied(null);
    try {
      const resp = await post<RecommendResponse>("/recommend", { scope, since: sinceParam(since) });
      setDraft({ scope, resp });
      setEdits(noEdits());
    } catch (e) {
      setError(e);
      setDraft(null);
    } finally {
      setBusy(false);
    }
  };

  // apply publishes exactly the draft shown (with its edits) through
  // POST /apply, so what was reviewed is what is enforced even if new
  // flows arrived since.
  const apply = async (staged: boolean) => {
    if (!draft) return;
    setBusy(true);
    setError(null);
    try {
      const { changes } = draft.resp;
      const summary =
        `recommend ${draft.scope}: ${changes.added?.length ?? 0} rules added` +
        (isEdited ? ", edited in the console" : "") +
        (staged ? " (staged)" : "");
      const r = await post<ApplyResponse>("/apply", { documents: edited(draft.resp.documents, edits, added, staged), summary });
      forgetMembers();
      setApplied({ revision: r.revision, changes: r.changes.length, staged });
      setDraft(null);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const policyDoc = draft?.resp.documents.find((d) => d.object.kind === "Policy")?.object as Policy | undefined;
  const groups = (draft?.resp.documents ?? []).filter((d) => d.object.kind === "Group").map((d) => d.object as Group);
  const services = (draft?.resp.documents ?? []).filter((d) => d.object.kind === "Service").map((d) => d.object as Resource<"Service", { ports: string[] }>);
  const forbidden = error instanceof ApiError && error.status === 403;

  return (
    <Page title="Recommendations">
      {!session.canEdit && (
        <p className="readonly" data-testid="readonly">
          Read-only: recommendations are computed for operators, who can apply them; the {session.role} role sees the map, the policy and
          compliance.
        </p>
      )}
      <div className="toolbar row">
        <label htmlFor="scope">Scope</label>
        <select id="scope" aria-label="Scope" value={choice} onChange={(e) => setChoice(e.target.value)}>
          {options.map((o) => (
            <option key={o.scope} value={o.scope}>
              app {o.id}
            </option>
          ))}
          <option value="all()">whole data center</option>
          <option value="custom">Tag expression…</option>
        </select>
        {choice === "custom" && (
          <input aria-label="Tag expression" placeholder='app == "shop"' value={custom} onChange={(e) => setCustom(e.target.value)} size={32} />
        )}
        <WindowPicker value={since} onChange={setSince} />
        <button className="primary" onClick={run} disabled={busy || !scope || !session.canEdit}>
          Recommend
        </button>
        {scope && <code className="muted">{scope}</code>}
      </div>
      <ErrorBox error={apps.error} />
      {!forbidden && <ErrorBox error={error} />}
      {applied && (
        <p className="notice" role="status" data-testid="applied">
          Applied as revision {applied.revision} ({applied.changes} change{applied.changes === 1 ? "" : "s"}
          {applied.staged ? ", new rules staged: counted on flows, not enforced" : ", enforced"}). The map and compliance now classify flows against it.
        </p>
      )}
      {draft && (
        <div data-testid="draft-recommendation">
          <p>
            From <strong>{num(draft.resp.records)}</strong> flow records ({num(draft.resp.connections)} connections
            {draft.resp.refused ? `, ${num(draft.resp.refused)} refused or unanswered` : ""}) between {when(draft.resp.since)} and {when(draft.resp.until)}.{" "}
            {draft.resp.changes.incremental ? "The policy exists: the draft keeps its rules and adds what they do not allow." : "A new policy."}
          </p>
          <WhatIf state={whatIf} edited={isEdited} />
          {(draft.resp.scanners?.length ?? 0) > 0 && (
            <>
              <h2>Left out: scanners</h2>
              <table data-testid="scanners" className="compact">
                <thead>
                  <tr>
                    <th>Source</th>
                    <th>Unanswered targets</th>
                    <th>Examples</th>
                  </tr>
                </thead>
                <tbody>
                  {draft.resp.scanners!.map((s) => (
                    <tr key={s.address}>
                      <td>
                        <strong>{s.workload ?? s.address}</strong> <span className="mono muted">{s.address}</span>
                      </td>
                      <td>
                        {s.failed} ({s.targets} hosts, {s.ports} ports) of {num(s.connections)} connections
                      </td>
                      <td className="mono">{(s.examples ?? []).join("; ")}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </>
          )}
          <h2>Rules{policyDoc && <span className="muted"> of policy {policyDoc.metadata.name} ({policyDoc.spec.category})</span>}</h2>
          {policyDoc && (
            <table data-testid="draft-rules">
              <thead>
                <tr>
                  <th>Keep</th>
                  <th>Rule</th>
                  <th>From → to</th>
                  <th>Services</th>
                  <th>Action</th>
                  <th>Evidence</th>
                </tr>
              </thead>
              <tbody>
                {policyDoc.spec.rules.map((r) => {
                  const ev = draft.resp.evidence[r.name];
                  const state = added.has(r.name) ? "added" : draft.resp.changes.stale?.includes(r.name) ? "stale" : draft.resp.changes.unchanged?.includes(r.name) ? "unchanged" : "";
                  const removed = edits.removed.has(r.name);
                  return (
                    <tr key={r.name} data-rule={r.name} className={removed ? "removed" : ""}>
                      <td>
                        <input
                          type="checkbox"
                          aria-label={`Keep ${r.name}`}
                          checked={!removed}
                          onChange={(e) => {
                            const next = { ...edits, removed: new Set(edits.removed) };
                            if (e.target.checked) next.removed.delete(r.name);
                            else next.removed.add(r.name);
                            setEdits(next);
                          }}
                        />
                      </td>
                      <td>
                        <strong>{r.name}</strong>
                        {state && <span className={`badge ${state === "added" ? "good" : state === "stale" ? "warn" : ""}`}>{state}</span>}
                        {r.description && <div className="muted">{r.description}</div>}
                      </td>
                      <td className="mono">
                        {list(r.sources)} → {list(r.destinations)}
                      </td>
                      <td className="mono">{list(r.services)}</td>
                      <td>
                        <select
                          aria-label={`Action of ${r.name}`}
                          value={edits.action[r.name] ?? r.action}
                          onChange={(e) => setEdits({ ...edits, action: { ...edits.action, [r.name]: e.target.value as Action } })}
                        >
                          {actions.map((a) => (
                            <option key={a}>{a}</option>
                          ))}
                        </select>
                      </td>
                      <td>
                        {ev ? (
                          <div data-testid={`evidence-${r.name}`}>
                            {num(ev.flows)} flows, {bytes(ev.bytes)}
                            <div className="muted">
                              {when(ev.firstSeen)} – {when(ev.lastSeen)}
                            </div>
                            {(ev.examples ?? []).slice(0, 3).map((x) => (
                              <div key={x} className="mono muted">
                                {x}
                              </div>
                            ))}
                          </div>
                        ) : (
                          <span className="muted">no flows: {r.action === "allow" ? "kept from before" : "closes the scope"}</span>
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          )}
          {(draft.resp.changes.removed?.length ?? 0) > 0 && <p className="muted">Removed (pruned, unused): {draft.resp.changes.removed!.join(", ")}</p>}
          <div className="split">
            <div>
              <h2>Groups</h2>
              <table className="compact" data-testid="draft-groups">
                <tbody>
                  {groups.map((g) => (
                    <tr key={g.metadata.name}>
                      <td>
                        <strong>{g.metadata.name}</strong>
                      </td>
                      <td className="mono">{g.spec.match || (g.spec.ips ?? []).join(", ") || (g.spec.groups ?? []).join(", ")}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
              {(draft.resp.reused?.length ?? 0) > 0 && <p className="muted">Reused: {draft.resp.reused!.join(", ")}</p>}
            </div>
            <div>
              <h2>Services</h2>
              <table className="compact" data-testid="draft-services">
                <tbody>
                  {services.map((s) => (
                    <tr key={s.metadata.name}>
                      <td>
                        <strong>{s.metadata.name}</strong>
                      </td>
                      <td className="mono">{s.spec.ports.join(", ")}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </div>
          {session.canEdit && (
            <div className="apply-bar row">
              <button className="primary" onClick={() => apply(false)} disabled={busy}>
                Apply (enforce)
              </button>
              <button onClick={() => apply(true)} disabled={busy}>
                Apply staged
              </button>
              <span className="muted">
                Publishes this draft{isEdited ? " with your edits" : ""} as one revision (POST /api/v1/apply). Staged: the added rules are counted on
                flows (dashed on the map), not enforced.
              </span>
            </div>
          )}
        </div>
      )}
    </Page>
  );
}

const examplesShown = 6;

function WhatIf({ state, edited }: { state: { data?: WhatIfResponse; error?: unknown; loading: boolean }; edited: boolean }) {
  const w = state.data;
  const [all, setAll] = useState(false);
  const examples = w ? (all ? w.examples : w.examples.slice(0, examplesShown)) : [];
  return (
    <div className="whatif" data-testid="whatif">
      <h2>What if{edited ? " (as edited)" : ""}</h2>
      <ErrorBox error={state.error} />
      {state.loading && !w && <p className="muted">Replaying the window…</p>}
      {w && (
        <>
          <p data-testid="whatif-summary">
            Replayed against revision r{w.baseline}, this draft would have dropped <strong>{num(w.wouldDrop)}</strong> of{" "}
            {num(w.records)} flow records and newly allowed <strong>{num(w.wouldAllow)}</strong> ({w.changed} distinct flow
            {w.changed === 1 ? "" : "s"} change).
          </p>
          {w.examples.length > 0 && (
            <table className="compact" data-testid="whatif-examples">
              <thead>
                <tr>
                  <th>Change</th>
                  <th>Flow</th>
                  <th>Records</th>
                  <th>Now</th>
                  <th>With the draft</th>
                </tr>
              </thead>
              <tbody>
                {examples.map((x, i) => (
                  <tr key={i}>
                    <td>
                      <span className={`badge ${x.change === "drop" ? "bad" : "good"}`}>{x.change === "drop" ? "would drop" : "would allow"}</span>
                    </td>
                    <td className="mono">
                      {x.srcWorkload ?? x.src} → {x.dstWorkload ?? x.dst} {x.service}
                    </td>
                    <td className="num">{num(x.flows)}</td>
                    <td>
                      {x.before.verdict} <span className="mono muted">{x.before.rule}</span>
                    </td>
                    <td>
                      {x.after.verdict} <span className="mono muted">{x.after.rule}</span>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {w.examples.length > examplesShown && (
            <button className="link" onClick={() => setAll(!all)}>
              {all ? "Fewer examples" : `All ${w.examples.length} examples`}
            </button>
          )}
        </>
      )}
    </div>
  );
}
