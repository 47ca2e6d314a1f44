import { useState } from "react";
import { get } from "../api";
import { ComplianceBar, ErrorBox, Page, WindowPicker, useLoad } from "../common";
import { num, sinceParam, type Since } from "../analysis";
import type { ComplianceCounts, ComplianceResponse, ComplianceRow, Level } from "../types";

const levels: Level[] = ["env", "app", "tier", "workload"];

// A row's share of the flows a rule allows.
const share = (c: ComplianceCounts) => (c.total ? Math.round((100 * c.green) / c.total) : 0);

function Counts({ c }: { c: ComplianceCounts }) {
  return (
    <>
      <td className="num cls-green">{num(c.green)}</td>
      <td className="num cls-amber">{num(c.amber)}</td>
      <td className="num cls-red">{num(c.red)}</td>
      <td className="num cls-dashed">{num(c.dashed)}</td>
      <td className="num">{num(c.total)}</td>
      <td className="num">{share(c)}%</td>
      <td>
        <ComplianceBar counts={c} />
      </td>
    </>
  );
}

const head = (
  <>
    <th>Green</th>
    <th>Amber</th>
    <th>Red</th>
    <th>Dashed</th>
    <th>Flows</th>
    <th>Covered</th>
    <th />
  </>
);

export function Compliance() {
  const [level, setLevel] = useState<Level>("app");
  const [since, setSince] = useState<Since>("24h");
  const data = useLoad(
    () => get<ComplianceResponse>(`/compliance?level=${level}&since=${encodeURIComponent(sinceParam(since))}`),
    [level, since],
  );
  const d = data.data;
  // Worst first: what is blocked or unprotected is what to look at.
  const worst = (a: ComplianceRow, b: ComplianceRow) =>
    b.counts.red - a.counts.red || b.counts.amber + b.counts.dashed - (a.counts.amber + a.counts.dashed) || b.counts.total - a.counts.total;
  return (
    <Page
      title="Compliance"
      actions={
        <>
          <label className="muted" htmlFor="level">
            Level
          </label>
          <select id="level" value={level} onChange={(e) => setLevel(e.target.value as Level)}>
            {levels.map((l) => (
              <option key={l}>{l}</option>
            ))}
          </select>
          <WindowPicker value={since} onChange={setSince} />
          <button onClick={data.reload}>Refresh</button>
        </>
      }
    >
      <ErrorBox error={data.error} />
      <p className="muted">
        Every flow record of the window, classified against the published policy: <span className="cls-green">green</span> allowed by a rule,{" "}
        <span className="cls-amber">amber</span> allowed only by the default rule (unprotected), <span className="cls-red">red</span> blocked,{" "}
        <span className="cls-dashed">dashed</span> allowed now but a staged rule would block it.
      </p>
      {d && (
        <>
          <table data-testid="compliance-total" className="compliance">
            <thead>
              <tr>
                <th>Revision</th>
                {head}
              </tr>
            </thead>
            <tbody>
              <tr>
                <td>
                  <strong>r{d.revision}</strong> <span className="muted">all flows</span>
                </td>
                <Counts c={d.total} />
              </tr>
            </tbody>
          </table>
          <h2>Per {d.level}</h2>
          {d.nodes.length === 0 && <p className="empty">No flows in this window.</p>}
          {d.nodes.length > 0 && (
            <table data-testid="compliance-nodes" className="compliance">
              <thead>
                <tr>
                  <th>{d.level}</th>
                  {head}
                </tr>
              </thead>
              <tbody>
                {[...d.nodes].sort(worst).map((r) => (
                  <tr key={r.node} data-node={r.node}>
                    <td>
                      <strong>{r.node}</strong>
                      {r.proposed ? <span className="badge warn" title="placed by discovery: these workloads have no tags">{r.proposed} proposed</span> : null}
                    </td>
                    <Counts c={r.counts} />
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <h2>Per edge</h2>
          {d.edges.length > 0 && (
            <table data-testid="compliance-edges" className="compliance">
              <thead>
                <tr>
                  <th>From → to</th>
                  {head}
                </tr>
              </thead>
              <tbody>
                {[...d.edges].sort(worst).map((r) => (
                  <tr key={`${r.from}->${r.to}`} data-edge={`${r.from}->${r.to}`}>
                    <td>
                      {r.from} → {r.to}
                    </td>
                    <Counts c={r.counts} />
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      )}
    </Page>
  );
}
