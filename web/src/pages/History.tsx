import { useState } from "react";
import { get, post } from "../api";
import { DiffText, ErrorBox, Page, useLoad, when } from "../common";
import type { Session } from "../App";
import type { ApplyResponse, AuditEntry, DiffResponse, Revision } from "../types";

export function History({ session }: { session: Session }) {
  const revs = useLoad(() => get<Revision[]>("/revisions?limit=100"));
  const audit = useLoad(() => get<AuditEntry[]>("/audit?limit=50"));
  const [selected, setSelected] = useState<number | null>(null);
  const [confirm, setConfirm] = useState(false);
  const [notice, setNotice] = useState("");
  const [error, setError] = useState<unknown>(null);
  const diff = useLoad(
    () => (selected === null ? Promise.resolve(null) : get<DiffResponse>(`/revisions/${selected}/diff`)),
    [selected],
  );
  const head = revs.data?.[0]?.number;

  const rollback = async (n: number) => {
    setError(null);
    try {
      const r = await post<ApplyResponse>("/rollback", { revision: n });
      setNotice(`Rolled back to revision ${n} as revision ${r.revision}.`);
      setConfirm(false);
      setSelected(r.revision);
      revs.reload();
      audit.reload();
    } catch (e) {
      setError(e);
    }
  };

  return (
    <Page
      title="History & audit"
      actions={
        <button
          onClick={() => {
            revs.reload();
            audit.reload();
          }}
        >
          Refresh
        </button>
      }
    >
      <ErrorBox error={revs.error} />
      {notice && (
        <p className="notice" role="status">
          {notice}
        </p>
      )}
      <div className="split">
        <div>
          <h2>Revisions</h2>
          <table data-testid="revisions" className="clickable">
            <thead>
              <tr>
                <th>Revision</th>
                <th>Time</th>
                <th>Author</th>
                <th>Summary</th>
              </tr>
            </thead>
            <tbody>
              {(revs.data ?? []).map((r) => (
                <tr
                  key={r.number}
                  className={r.number === selected ? "selected" : ""}
                  onClick={() => {
                    setSelected(r.number);
                    setConfirm(false);
                  }}
                >
                  <td className="num">
                    <a
                      href={`#r${r.number}`}
                      onClick={(e) => e.preventDefault()}
                      aria-label={`Revision ${r.number}`}
                    >
                      r{r.number}
                    </a>
                    {r.number === head && <span className="badge good">published</span>}
                  </td>
                  <td>{when(r.time)}</td>
                  <td>{r.author}</td>
                  <td>
                    {r.summary}
                    {r.rollback ? <span className="badge">rollback to r{r.rollback}</span> : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {revs.data?.length === 0 && <p className="empty">Nothing published yet.</p>}
        </div>
        <div data-testid="revision-detail">
          {selected === null ? (
            <p className="muted">Pick a revision to see what it changed.</p>
          ) : (
            <>
              <h2>
                Revision r{selected}
                {diff.data && diff.data.from > 0 && <span className="muted"> against r{diff.data.from}</span>}
              </h2>
              {session.canEdit && selected !== head && (
                <div className="row">
                  {!confirm ? (
                    <button onClick={() => setConfirm(true)}>Roll back to r{selected}…</button>
                  ) : (
                    <>
                      <span>Publish revision r{selected}'s policy as a new revision?</span>
                      <button className="primary danger" onClick={() => rollback(selected)}>
                        Confirm rollback
                      </button>
                      <button className="link" onClick={() => setConfirm(false)}>
                        Cancel
                      </button>
                    </>
                  )}
                </div>
              )}
              <ErrorBox error={error ?? diff.error} />
              {diff.data?.changes.length === 0 && <p className="muted">No policy change.</p>}
              {diff.data?.changes.map((c) => (
                <div key={c.Kind + c.Name}>
                  <h3>
                    {c.Kind} {c.Name} <span className={`op op-${c.Op}`}>{c.Op}</span>
                  </h3>
                  <DiffText text={c.Diff} />
                </div>
              ))}
            </>
          )}
        </div>
      </div>
      <h2>Audit log</h2>
      <ErrorBox error={audit.error} />
      <table data-testid="audit">
        <thead>
          <tr>
            <th>Time</th>
            <th>Actor</th>
            <th>Action</th>
            <th>Object</th>
            <th>Revision</th>
          </tr>
        </thead>
        <tbody>
          {(audit.data ?? []).map((a) => (
            <tr key={a.id}>
              <td>{when(a.time)}</td>
              <td>{a.actor}</td>
              <td>{a.action}</td>
              <td className="mono">{a.object || ""}</td>
              <td className="num">{a.revision ? `r${a.revision}` : ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </Page>
  );
}
