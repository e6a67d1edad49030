import { useEffect, useMemo, useState } from "react";
import { errorText } from "../api";
import { BarChart, type Point, type Series } from "../components/BarChart";
import { useLoad } from "../components/useLoad";
import { useQueryState } from "../components/useQueryState";
import { toCsv } from "../csv";
import { num, usd, when } from "../format";
import { UsageDimension, type RequestLogEntry, type UsageBucket } from "../gen/tollgate/admin/v1/usage_query_pb";
import { useSession } from "../session";
import type { Api } from "../api";

const DAY = 86_400_000;
const WINDOWS: Record<string, number> = { "7d": 7, "30d": 30, "90d": 90 };
const METRICS = { tokens: "Tokens by bucket", cost: "Cost", calls: "Calls", errors: "Error rate" } as const;
type Metric = keyof typeof METRICS;
const GROUPS = { model: UsageDimension.MODEL, key: UsageDimension.KEY, provider: UsageDimension.PROVIDER } as const;
type Group = keyof typeof GROUPS;

/** Start of the UTC day `days - 1` days before today: a window of whole days. */
export function windowStart(days: number, now = Date.now()): number {
  return Math.floor(now / DAY) * DAY - (days - 1) * DAY;
}

/** Disjoint token buckets of a usage bucket (prompt includes cache, completion includes reasoning). */
export function tokenParts(b: Pick<UsageBucket, "promptTokens" | "completionTokens" | "cacheReadTokens" | "cacheWriteTokens" | "reasoningTokens">): number[] {
  const input = b.promptTokens - b.cacheReadTokens - b.cacheWriteTokens;
  const output = b.completionTokens - b.reasoningTokens;
  return [input < 0n ? 0n : input, b.cacheReadTokens, b.cacheWriteTokens, output < 0n ? 0n : output, b.reasoningTokens].map(Number);
}

const TOKEN_SERIES: Series[] = [
  { label: "input", color: "#2f6db3" },
  { label: "cache read", color: "#7fb2e5" },
  { label: "cache write", color: "#9c6ade" },
  { label: "output", color: "#e07b39" },
  { label: "reasoning", color: "#c9a227" },
];

/** One point per day of the window (days without calls are zero). */
export function dailyPoints(buckets: UsageBucket[], since: number, days: number, metric: Metric): Point[] {
  const byDay = new Map(buckets.map((b) => [Number(b.bucketStartMs), b]));
  return Array.from({ length: days }, (_, i) => {
    const start = since + i * DAY;
    const b = byDay.get(start);
    const label = new Date(start).toISOString().slice(5, 10);
    if (!b) return { label, values: metric === "tokens" ? [0, 0, 0, 0, 0] : metric === "calls" ? [0, 0] : [0] };
    switch (metric) {
      case "tokens":
        return { label, values: tokenParts(b) };
      case "cost":
        return { label, values: [Number(b.costMicros)] };
      case "calls":
        return { label, values: [Number(b.calls - b.errors), Number(b.errors)] };
      case "errors":
        return { label, values: [b.calls ? (Number(b.errors) / Number(b.calls)) * 100 : 0] };
    }
  });
}

const chartUsd = (n: number) => `$${(n / 1e6).toFixed(n && n < 10_000 ? 4 : 2)}`;

async function allBuckets(api: Api, req: Parameters<Api["usageQuery"]["queryUsage"]>[0]): Promise<UsageBucket[]> {
  const out: UsageBucket[] = [];
  let pageToken = "";
  // At most 10 pages of 1000: far more rows than a table can show.
  for (let i = 0; i < 10; i++) {
    const r = await api.usageQuery.queryUsage({ ...req, pageSize: 1000, pageToken });
    out.push(...r.buckets);
    pageToken = r.nextPageToken;
    if (!pageToken) break;
  }
  return out;
}

export default function Usage() {
  const { api, tenant } = useSession();
  const [win, setWin] = useQueryState("window", "7d");
  const [metric, setMetric] = useQueryState("metric", "tokens");
  const [group, setGroup] = useQueryState("group", "model");
  const days = WINDOWS[win] ?? 7;
  const since = windowStart(days);
  const m: Metric = metric in METRICS ? (metric as Metric) : "tokens";
  const g: Group = group in GROUPS ? (group as Group) : "model";
  const [round, setRound] = useState(0);

  const names = useLoad(async () => {
    const [k, p] = await Promise.all([api.keys.listKeys({ tenant }), api.providers.listProviders({ tenant })]);
    return { keys: k.keys, providers: p.providers };
  }, [api, tenant]);
  const { data, error } = useLoad(async () => {
    const [daily, grouped] = await Promise.all([
      allBuckets(api, { tenant, sinceMs: BigInt(since), groupBy: [UsageDimension.DAY] }),
      allBuckets(api, { tenant, sinceMs: BigInt(since), groupBy: [GROUPS[g]] }),
    ]);
    return { daily, grouped: grouped.sort((a, b) => Number(b.calls - a.calls)) };
  }, [api, tenant, since, g, round]);
  const keyName = (id: string) => names.data?.keys.find((k) => k.id === id)?.name ?? id;
  const providerName = (id: string) => names.data?.providers.find((p) => p.id === id)?.name ?? id;
  const label = (b: UsageBucket) => (g === "model" ? b.model : g === "key" ? keyName(b.keyId) : providerName(b.providerId)) || "(none)";

  const points = useMemo(() => (data ? dailyPoints(data.daily, since, days, m) : []), [data, since, days, m]);
  const series: Series[] =
    m === "tokens"
      ? TOKEN_SERIES
      : m === "calls"
        ? [
            { label: "succeeded", color: "#2f8f4e" },
            { label: "failed", color: "#b3261e" },
          ]
        : [{ label: METRICS[m], color: m === "errors" ? "#b3261e" : "#2f6db3" }];
  const format = m === "cost" ? chartUsd : m === "errors" ? (n: number) => `${n.toFixed(n % 1 ? 1 : 0)}%` : (n: number) => Math.round(n).toLocaleString("en-US");

  return (
    <>
      <div className="toolbar" role="group" aria-label="Usage window and grouping">
        <label>
          Window
          <select aria-label="Window" value={win} onChange={(e) => setWin(e.target.value)}>
            {Object.keys(WINDOWS).map((w) => (
              <option key={w} value={w}>
                last {WINDOWS[w]} days
              </option>
            ))}
          </select>
        </label>
        <label>
          Chart
          <select aria-label="Chart" value={m} onChange={(e) => setMetric(e.target.value)}>
            {Object.entries(METRICS).map(([k, v]) => (
              <option key={k} value={k}>
                {v}
              </option>
            ))}
          </select>
        </label>
        <label>
          Table by
          <select aria-label="Table by" value={g} onChange={(e) => setGroup(e.target.value)}>
            {Object.keys(GROUPS).map((k) => (
              <option key={k}>{k}</option>
            ))}
          </select>
        </label>
        <button type="button" onClick={() => setRound((n) => n + 1)}>
          Refresh
        </button>
      </div>
      {error && <p role="alert" className="notice error">{error}</p>}
      {!data && !error && <p role="status">Loading…</p>}
      {data && (
        <>
          <BarChart title={`${METRICS[m]} per day (UTC), last ${days} days`} series={series} points={points} format={format} integer={m === "tokens" || m === "calls"} />
          <div className="scroll">
            <table>
              <caption>
                Usage by {g}, last {days} days
              </caption>
              <thead>
                <tr>
                  <th scope="col">{g[0].toUpperCase() + g.slice(1)}</th>
                  <th scope="col" className="num">Calls</th>
                  <th scope="col" className="num">Errors</th>
                  <th scope="col" className="num">Input</th>
                  <th scope="col" className="num">Cache read</th>
                  <th scope="col" className="num">Cache write</th>
                  <th scope="col" className="num">Output</th>
                  <th scope="col" className="num">Reasoning</th>
                  <th scope="col" className="num">Cost</th>
                  <th scope="col" className="num">Mean latency</th>
                </tr>
              </thead>
              <tbody>
                {data.grouped.length === 0 && (
                  <tr>
                    <td colSpan={10}>No usage in this window.</td>
                  </tr>
                )}
                {data.grouped.map((b) => {
                  const t = tokenParts(b);
                  return (
                    <tr key={`${b.model}/${b.keyId}/${b.providerId}`}>
                      <td>{label(b)}</td>
                      <td className="num">{num(b.calls)}</td>
                      <td className="num">{num(b.errors)}</td>
                      {t.map((v, i) => (
                        <td key={i} className="num">
                          {num(v)}
                        </td>
                      ))}
                      <td className="num">{usd(b.costMicros)}</td>
                      <td className="num">{b.calls ? `${num(b.latencyMsSum / b.calls)} ms` : "—"}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        </>
      )}
      <RequestLog keys={names.data?.keys ?? []} providerName={providerName} keyName={keyName} since={since} round={round} />
    </>
  );
}

const LOG_PAGE = 50;

function RequestLog({
  keys,
  keyName,
  providerName,
  since,
  round,
}: {
  keys: { id: string; name: string }[];
  keyName: (id: string) => string;
  providerName: (id: string) => string;
  since: number;
  round: number;
}) {
  const { api, tenant } = useSession();
  const [model, setModel] = useQueryState("model");
  const [key, setKey] = useQueryState("key");
  const [status, setStatus] = useQueryState("status");
  const [errorsOnly, setErrorsOnly] = useQueryState("errors");
  const [rows, setRows] = useState<RequestLogEntry[]>([]);
  const [next, setNext] = useState("");
  const [state, setState] = useState<"loading" | "ready" | string>("loading");
  const statusCode = /^\d{3}$/.test(status) ? Number(status) : 0;
  const filter = { tenant, sinceMs: BigInt(since), model: model.trim(), keyId: key, statusCode, errorsOnly: errorsOnly === "1", pageSize: LOG_PAGE };

  const load = async (pageToken: string) => {
    setState("loading");
    try {
      const r = await api.usageQuery.searchRequests({ ...filter, pageToken });
      setRows((prev) => (pageToken ? [...prev, ...r.requests] : r.requests));
      setNext(r.nextPageToken);
      setState("ready");
    } catch (e) {
      setState(errorText(e));
    }
  };
  useEffect(() => {
    void load("");
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [api, tenant, since, model, key, statusCode, errorsOnly, round]);

  const csvHref = useMemo(() => {
    const csv = toCsv(
      ["started_at_ms", "request_id", "api", "model", "upstream_model", "key_id", "provider_id", "status_code", "error_code", "stream", "latency_ms", "ttft_ms", "prompt_tokens", "completion_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "cost_micros", "node_id"],
      rows.map((r) => [r.startedAtMs, r.requestId, r.api, r.model, r.upstreamModel, r.keyId, r.providerId, r.statusCode, r.errorCode, r.stream, r.latencyMs, r.ttftMs, r.promptTokens, r.completionTokens, r.cacheReadTokens, r.cacheWriteTokens, r.reasoningTokens, r.costMicros, r.nodeId]),
    );
    return `data:text/csv;charset=utf-8,${encodeURIComponent(csv)}`;
  }, [rows]);

  return (
    <section aria-label="Request log">
      <h2>Request log</h2>
      <form className="toolbar filters" aria-label="Filter the request log" onSubmit={(e) => e.preventDefault()}>
        <label>
          Model
          <input aria-label="Model" value={model} placeholder="any" onChange={(e) => setModel(e.target.value)} />
        </label>
        <label>
          Key
          <select aria-label="Key" value={key} onChange={(e) => setKey(e.target.value)}>
            <option value="">any</option>
            {keys.map((k) => (
              <option key={k.id} value={k.id}>
                {k.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Status
          <input aria-label="Status" inputMode="numeric" placeholder="any" size={5} value={status} aria-invalid={status && !statusCode ? true : undefined} onChange={(e) => setStatus(e.target.value)} />
        </label>
        <label className="inline">
          <input type="checkbox" checked={errorsOnly === "1"} onChange={(e) => setErrorsOnly(e.target.checked ? "1" : "")} /> Failed calls only
        </label>
        <a href={csvHref} download={`tollgate-${tenant}-requests.csv`}>
          Export CSV ({rows.length} rows)
        </a>
      </form>
      {status && !statusCode && <p className="field-error">A status is a three-digit HTTP code, like 429.</p>}
      {state !== "loading" && state !== "ready" && <p role="alert" className="notice error">{state}</p>}
      <div className="scroll">
        <table>
          <caption>Requests (metadata only; newest first)</caption>
          <thead>
            <tr>
              <th scope="col">Started</th>
              <th scope="col">Request id</th>
              <th scope="col">Model</th>
              <th scope="col">Key</th>
              <th scope="col">Provider</th>
              <th scope="col">Status</th>
              <th scope="col" className="num">Latency</th>
              <th scope="col" className="num">Tokens (in/out)</th>
              <th scope="col" className="num">Cost</th>
            </tr>
          </thead>
          <tbody>
            {state === "ready" && rows.length === 0 && (
              <tr>
                <td colSpan={9}>No requests match.</td>
              </tr>
            )}
            {rows.map((r) => (
              <tr key={r.id}>
                <td>{when(r.startedAtMs)}</td>
                <td>
                  <code>{r.requestId}</code>
                </td>
                <td>{r.model}</td>
                <td>{keyName(r.keyId)}</td>
                <td>{r.providerId ? providerName(r.providerId) : "—"}</td>
                <td className={r.statusCode >= 400 ? "warn" : undefined}>
                  {r.statusCode}
                  {r.errorCode ? ` ${r.errorCode}` : ""}
                </td>
                <td className="num">{num(r.latencyMs)} ms</td>
                <td className="num">
                  {num(r.promptTokens)} / {num(r.completionTokens)}
                </td>
                <td className="num">{usd(r.costMicros)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {state === "loading" && <p role="status">Loading…</p>}
      {next && state === "ready" && (
        <button type="button" onClick={() => void load(next)}>
          More requests
        </button>
      )}
    </section>
  );
}
