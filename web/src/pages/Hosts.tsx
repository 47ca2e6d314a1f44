import { get } from "../api";
import { ErrorBox, Page, useLoad, when } from "../common";
import type { Host } from "../types";

export function Hosts() {
  const hosts = useLoad(() => get<Host[]>("/hosts"));
  return (
    <Page title="Hosts" actions={<button onClick={hosts.reload}>Refresh</button>}>
      <p className="muted">
        Each host's agent: whether it is connected, and the revision it has realized in its data plane against the one
        published.
      </p>
      <ErrorBox error={hosts.error} />
      {hosts.data && hosts.data.length === 0 && (
        <p className="empty">
          No host has enrolled yet. Create a bootstrap token with <code>bulkhead token create</code> and start{" "}
          <code>bulkhead agent</code> on the host.
        </p>
      )}
      {hosts.data && hosts.data.length > 0 && (
        <table data-testid="hosts">
          <thead>
            <tr>
              <th>Host</th>
              <th>Agent</th>
              <th>Realized</th>
              <th>Desired</th>
              <th>Published</th>
              <th>Workloads</th>
              <th>Last seen</th>
              <th>Enrolled</th>
              <th>Last error</th>
            </tr>
          </thead>
          <tbody>
            {hosts.data.map((h) => (
              <tr key={h.name}>
                <td>
                  <strong>{h.name}</strong>
                </td>
                <td>
                  <span className="badges">
                    {h.revoked ? (
                      <span className="badge bad">revoked</span>
                    ) : h.connected ? (
                      <span className="badge good">connected</span>
                    ) : (
                      <span className="badge warn">disconnected</span>
                    )}
                    {!h.revoked &&
                      (h.inSync ? <span className="badge good">in sync</span> : <span className="badge warn">behind</span>)}
                  </span>
                </td>
                <td className="num"><span className="rev">r{h.realizedRevision}</span></td>
                <td className="num"><span className="rev">r{h.desiredRevision}</span></td>
                <td className="num">
                  <span className="rev">r{h.publishedRevision}</span>
                  {h.inSync && h.desiredRevision < h.publishedRevision && (
                    <div className="muted">no change here since r{h.desiredRevision}</div>
                  )}
                </td>
                <td className="num" data-testid="workloads">{h.workloads}</td>
                <td>{when(h.lastSeen)}</td>
                <td>{when(h.enrolled)}</td>
                <td className={h.lastError ? "error-text" : "muted"}>{h.lastError || "none"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}
