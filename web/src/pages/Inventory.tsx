import { get } from "../api";
import { ErrorBox, Page, Tags, useLoad } from "../common";
import type { Group, Workload } from "../types";

export function Inventory() {
  const data = useLoad(() => Promise.all([get<Workload[]>("/resources/workloads"), get<Group[]>("/resources/groups")]));
  const [workloads, groups] = data.data ?? [[], []];
  return (
    <Page title="Inventory" actions={<button onClick={data.reload}>Refresh</button>}>
      <ErrorBox error={data.error} />
      <h2>Workloads ({workloads.length})</h2>
      {workloads.length === 0 && !data.loading && <p className="empty">No workloads yet: agents report them, or apply Workload documents.</p>}
      {workloads.length > 0 && (
        <table data-testid="workloads">
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
            {workloads.map((w) => (
              <tr key={w.metadata.name}>
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
      <h2>Groups ({groups.length})</h2>
      <p className="muted">
        Live membership needs the manager to evaluate each group; the API has no membership endpoint yet, so this table
        shows each group's criteria.
      </p>
      {groups.length > 0 && (
        <table data-testid="groups">
          <thead>
            <tr>
              <th>Group</th>
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
