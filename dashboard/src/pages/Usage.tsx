import { useState } from "react";
import { useLoad } from "../components/useLoad";
import { num, usd, when } from "../format";
import { useSession } from "../session";

export default function Usage() {
  const { api, tenant } = useSession();
  const [byKey, setByKey] = useState(false);
  const { data, error, reload } = useLoad(async () => {
    const [u, r] = await Promise.all([
      api.usage.getUsage({ tenant, byKey }),
      api.usage.listUsageRecords({ tenant, limit: 100 }),
    ]);
    return { rows: u.rows, records: r.records };
  }, [api, tenant, byKey]);

  return (
    <>
      <div className="toolbar">
        <label>
          <input type="checkbox" checked={byKey} onChange={(e) => setByKey(e.target.checked)} /> Per key
        </label>
        <button type="button" onClick={() => void reload()}>
          Refresh
        </button>
      </div>
      {error && <p role="alert" className="notice error">{error}</p>}
      {data && (
        <>
          <table>
            <caption>Usage by model{byKey ? " and key" : ""} (all time)</caption>
            <thead>
              <tr>
                <th scope="col">Model</th>
                {byKey && <th scope="col">Key</th>}
                <th scope="col">Calls</th>
                <th scope="col">Errors</th>
                <th scope="col">Prompt tokens</th>
                <th scope="col">Completion tokens</th>
                <th scope="col">Cost</th>
              </tr>
            </thead>
            <tbody>
              {data.rows.length === 0 && (
                <tr>
                  <td colSpan={7}>No usage yet.</td>
                </tr>
              )}
              {data.rows.map((r) => (
                <tr key={`${r.model}/${r.keyId}`}>
                  <td>{r.model}</td>
                  {byKey && <td>{r.keyId}</td>}
                  <td>{num(r.calls)}</td>
                  <td>{num(r.errors)}</td>
                  <td>{num(r.promptTokens)}</td>
                  <td>{num(r.completionTokens)}</td>
                  <td>{usd(r.costMicros)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <table>
            <caption>Latest requests (metadata only; newest first)</caption>
            <thead>
              <tr>
                <th scope="col">Started</th>
                <th scope="col">Request id</th>
                <th scope="col">Model</th>
                <th scope="col">Key</th>
                <th scope="col">Status</th>
                <th scope="col">Latency</th>
                <th scope="col">Tokens (in/out)</th>
                <th scope="col">Cost</th>
              </tr>
            </thead>
            <tbody>
              {data.records.length === 0 && (
                <tr>
                  <td colSpan={8}>No requests yet.</td>
                </tr>
              )}
              {data.records.map((r) => (
                <tr key={r.id}>
                  <td>{when(r.startedAtMs)}</td>
                  <td>
                    <code>{r.requestId}</code>
                  </td>
                  <td>{r.model}</td>
                  <td>{r.keyId}</td>
                  <td>
                    {r.statusCode}
                    {r.errorCode ? ` ${r.errorCode}` : ""}
                  </td>
                  <td>{num(r.latencyMs)} ms</td>
                  <td>
                    {num(r.promptTokens)} / {num(r.completionTokens)}
                  </td>
                  <td>{usd(r.costMicros)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </>
  );
}
