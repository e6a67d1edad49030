import { useMemo, useState } from "react";
import { useLoad } from "../components/useLoad";
import { toCsv } from "../csv";
import { num, usd, when } from "../format";
import { useSession } from "../session";

export default function Usage() {
  const { api, tenant } = useSession();
  const [byKey, setByKey] = useState(false);
  const [model, setModel] = useState("");
  const [outcome, setOutcome] = useState<"" | "ok" | "error">("");
  const { data, error, reload } = useLoad(async () => {
    const [u, r] = await Promise.all([
      api.usage.getUsage({ tenant, byKey }),
      api.usage.listUsageRecords({ tenant, limit: 100 }),
    ]);
    return { rows: u.rows, records: r.records };
  }, [api, tenant, byKey]);
  const records = useMemo(
    () =>
      (data?.records ?? []).filter(
        (r) =>
          (!model || r.model === model) &&
          (!outcome || (outcome === "ok" ? r.statusCode < 400 && !r.errorCode : r.statusCode >= 400 || !!r.errorCode)),
      ),
    [data, model, outcome],
  );
  const models = [...new Set((data?.records ?? []).map((r) => r.model))].sort();
  const csvHref = useMemo(() => {
    const csv = toCsv(
      ["started_at_ms", "request_id", "model", "key_id", "provider_id", "status_code", "error_code", "latency_ms", "prompt_tokens", "completion_tokens", "cost_micros"],
      records.map((r) => [r.startedAtMs, r.requestId, r.model, r.keyId, r.providerId, r.statusCode, r.errorCode, r.latencyMs, r.promptTokens, r.completionTokens, r.costMicros]),
    );
    return `data:text/csv;charset=utf-8,${encodeURIComponent(csv)}`;
  }, [records]);

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
          <div className="toolbar" role="group" aria-label="Filter the request log">
            <label>
              Model
              <select aria-label="Model" value={model} onChange={(e) => setModel(e.target.value)}>
                <option value="">all</option>
                {models.map((m) => (
                  <option key={m}>{m}</option>
                ))}
              </select>
            </label>
            <label>
              Outcome
              <select aria-label="Outcome" value={outcome} onChange={(e) => setOutcome(e.target.value as "" | "ok" | "error")}>
                <option value="">all</option>
                <option value="ok">succeeded</option>
                <option value="error">failed</option>
              </select>
            </label>
            <a href={csvHref} download={`tollgate-${tenant}-requests.csv`}>
              Export CSV ({records.length} rows)
            </a>
          </div>
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
              {records.length === 0 && (
                <tr>
                  <td colSpan={8}>No requests yet.</td>
                </tr>
              )}
              {records.map((r) => (
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
