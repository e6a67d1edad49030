import { useLoad } from "../components/useLoad";
import { when } from "../format";
import { useSession } from "../session";

export default function DataPlanes() {
  const { api } = useSession();
  const { data, error, reload } = useLoad(() => api.dataPlanes.getConfigStatus({}), [api]);
  if (error) return <p role="alert" className="notice error">{error}</p>;
  if (!data) return <p role="status">Loading…</p>;
  return (
    <>
      <p>
        Current config version <strong>{String(data.version)}</strong>.{" "}
        <button type="button" onClick={() => void reload()}>
          Refresh
        </button>
      </p>
      <table>
        <caption>Data planes connected to this control plane</caption>
        <thead>
          <tr>
            <th scope="col">Node</th>
            <th scope="col">Connected</th>
            <th scope="col">Acked version</th>
            <th scope="col">Rejected</th>
            <th scope="col">Last seen</th>
          </tr>
        </thead>
        <tbody>
          {data.dataPlanes.length === 0 && (
            <tr>
              <td colSpan={5}>No data plane has connected yet.</td>
            </tr>
          )}
          {data.dataPlanes.map((d) => (
            <tr key={d.nodeId}>
              <td>{d.nodeId}</td>
              <td>{d.connected ? "yes" : <span className="warn">no</span>}</td>
              <td>
                {String(d.ackedVersion)}
                {d.ackedVersion < data.version ? <span className="warn"> (behind)</span> : null}
              </td>
              <td>{d.rejectedVersion ? `v${d.rejectedVersion}: ${d.rejectReason}` : "—"}</td>
              <td>{when(d.lastSeenMs)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
