import { get } from "../api";
import { forgetMembers, groupMembers } from "../analysis";
import { ErrorBox, Page, Tags, useLoad } from "../common";
import type { Group, GroupMembers, Workload } from "../types";

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

export function Inventory() {
  const data = useLoad(loadInventory);
  const { workloads, groups, members } = data.data ?? { workloads: [], groups: [], members: new Map() };
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
