import { useState } from "react";
import { errorText } from "../api";
import { ConfirmButton } from "../components/ConfirmButton";
import { Notice, type NoticeState } from "../components/Notice";
import { useLoad } from "../components/useLoad";
import { when } from "../format";
import { can, useSession } from "../session";
import type { RoutePolicy } from "../gen/tollgate/admin/v1/admin_pb";

export default function Models() {
  const { api, tenant, role } = useSession();
  const [notice, setNotice] = useState<NoticeState>(null);
  const [routeOf, setRouteOf] = useState<string | null>(null);
  const { data, error, reload } = useLoad(async () => {
    const [m, p] = await Promise.all([api.models.listModels({ tenant }), api.providers.listProviders({ tenant })]);
    return { models: m.models, providers: p.providers };
  }, [api, tenant]);
  const writable = can(role, "write");
  const [name, setName] = useState("");
  const [provider, setProvider] = useState("");
  const [upstream, setUpstream] = useState("");

  return (
    <>
      <Notice notice={notice} />
      {error && <p role="alert" className="notice error">{error}</p>}
      {data && (
        <table>
          <caption>Models of {tenant}</caption>
          <thead>
            <tr>
              <th scope="col">Public name</th>
              <th scope="col">Provider</th>
              <th scope="col">Upstream model</th>
              <th scope="col">Added</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {data.models.length === 0 && (
              <tr>
                <td colSpan={5}>No models yet.</td>
              </tr>
            )}
            {data.models.map((m) => (
              <tr key={m.id}>
                <td>{m.name}</td>
                <td>{m.providerName}</td>
                <td>{m.upstreamModel}</td>
                <td>{when(m.createdAtMs)}</td>
                <td>
                  <button type="button" aria-expanded={routeOf === m.name} onClick={() => setRouteOf(routeOf === m.name ? null : m.name)}>
                    Route of {m.name}
                  </button>
                  {writable && (
                    <ConfirmButton
                      label={`Delete ${m.name}`}
                      confirmLabel={`Really delete ${m.name}`}
                      onConfirm={async () => {
                        try {
                          await api.models.deleteModel({ tenant, model: m.id });
                          setNotice({ kind: "ok", text: `Model ${m.name} deleted.` });
                          if (routeOf === m.name) setRouteOf(null);
                          await reload();
                        } catch (e) {
                          setNotice({ kind: "error", text: errorText(e) });
                        }
                      }}
                    />
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {routeOf && data && <RouteView model={routeOf} providers={data.providers.map((p) => p.name)} onNotice={setNotice} />}
      {writable && data && (
        <form
          aria-label="Add a model"
          onSubmit={async (e) => {
            e.preventDefault();
            try {
              const m = await api.models.addModel({ tenant, name, provider: provider || data.providers[0]?.name || "", upstreamModel: upstream });
              setNotice({ kind: "ok", text: `Model ${m.name} added (served by ${m.providerName} as ${m.upstreamModel}).` });
              setName("");
              setUpstream("");
              await reload();
            } catch (err) {
              setNotice({ kind: "error", text: errorText(err) });
            }
          }}
        >
          <h2>Add a model</h2>
          <label>
            Public name
            <input required value={name} onChange={(e) => setName(e.target.value)} />
          </label>
          <label>
            Provider
            <select aria-label="Provider" value={provider} onChange={(e) => setProvider(e.target.value)}>
              {data.providers.map((p) => (
                <option key={p.id}>{p.name}</option>
              ))}
            </select>
          </label>
          <label>
            Upstream model (empty: same as the public name)
            <input value={upstream} onChange={(e) => setUpstream(e.target.value)} />
          </label>
          <button type="submit" disabled={data.providers.length === 0}>
            Add model
          </button>
          {data.providers.length === 0 && <p className="hint">Add a provider first.</p>}
        </form>
      )}
    </>
  );
}

function RouteView({ model, providers, onNotice }: { model: string; providers: string[]; onNotice: (n: NoticeState) => void }) {
  const { api, tenant, role } = useSession();
  const { data, error, reload } = useLoad(() => api.routes.getRoute({ tenant, model }), [api, tenant, model]);
  const [provider, setProvider] = useState("");
  const [upstream, setUpstream] = useState("");
  const [priority, setPriority] = useState("0");
  const [weight, setWeight] = useState("1");
  const writable = can(role, "write");
  const p = data?.policy;
  return (
    <section aria-label={`Route of ${model}`}>
      <h2>Route of {model}</h2>
      {error && <p role="alert" className="notice error">{error}</p>}
      {data && (
        <>
          <table>
            <caption>Targets (lower priority first; weights within a priority)</caption>
            <thead>
              <tr>
                <th scope="col">Priority</th>
                <th scope="col">Weight</th>
                <th scope="col">Provider</th>
                <th scope="col">Upstream model</th>
                <th scope="col">State</th>
                {writable && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {data.targets.map((t) => (
                <tr key={t.id}>
                  <td>{t.priority}</td>
                  <td>{t.weight}</td>
                  <td>{t.providerName}</td>
                  <td>{t.upstreamModel || "(model's)"}</td>
                  <td>{t.providerDisabled ? <span className="warn">credential out of rotation</span> : "ok"}</td>
                  {writable && (
                    <td>
                      <ConfirmButton
                        label={`Remove ${t.providerName}`}
                        confirmLabel={`Really remove ${t.providerName}`}
                        onConfirm={async () => {
                          try {
                            await api.routes.removeRouteTarget({ tenant, model, provider: t.providerId, upstreamModel: t.upstreamModel });
                            onNotice({ kind: "ok", text: `Target ${t.providerName} removed from ${model}.` });
                            await reload();
                          } catch (e) {
                            onNotice({ kind: "error", text: errorText(e) });
                          }
                        }}
                      />
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
          <dl className="policy">
            <dt>Strategy</dt>
            <dd>{p?.strategy || "weighted (default)"}</dd>
            <dt>Max attempts</dt>
            <dd>{p?.maxAttempts || "3 (default)"}</dd>
            <dt>Total timeout</dt>
            <dd>{p?.totalTimeoutMs ? `${p.totalTimeoutMs} ms` : "default"}</dd>
            <dt>Fallback model</dt>
            <dd>{p?.fallbackModel || "none"}</dd>
          </dl>
          {writable && <PolicyForm key={`${model}:${String(data.policy?.maxAttempts)}:${data.policy?.strategy}:${data.policy?.fallbackModel}:${String(data.policy?.totalTimeoutMs)}`} model={model} policy={data.policy} onSaved={async (text) => { onNotice({ kind: "ok", text }); await reload(); }} onError={onNotice} />}
        </>
      )}
      {writable && (
        <form
          aria-label={`Add a target to ${model}`}
          onSubmit={async (e) => {
            e.preventDefault();
            try {
              await api.routes.addRouteTarget({
                tenant,
                model,
                provider: provider || providers[0] || "",
                upstreamModel: upstream,
                priority: Number(priority) || 0,
                weight: Number(weight) || 1,
              });
              onNotice({ kind: "ok", text: `Target added to ${model}.` });
              await reload();
            } catch (err) {
              onNotice({ kind: "error", text: errorText(err) });
            }
          }}
        >
          <label>
            Provider
            <select aria-label="Provider" value={provider} onChange={(e) => setProvider(e.target.value)}>
              {providers.map((n) => (
                <option key={n}>{n}</option>
              ))}
            </select>
          </label>
          <label>
            Upstream model
            <input value={upstream} onChange={(e) => setUpstream(e.target.value)} />
          </label>
          <label>
            Priority
            <input inputMode="numeric" value={priority} onChange={(e) => setPriority(e.target.value)} />
          </label>
          <label>
            Weight
            <input inputMode="numeric" value={weight} onChange={(e) => setWeight(e.target.value)} />
          </label>
          <button type="submit">Add target</button>
        </form>
      )}
    </section>
  );
}

const STRATEGIES = ["weighted", "least_in_flight", "latency", "ordered"];

function PolicyForm({
  model,
  policy,
  onSaved,
  onError,
}: {
  model: string;
  policy: RoutePolicy | undefined;
  onSaved: (text: string) => Promise<void>;
  onError: (n: NoticeState) => void;
}) {
  const { api, tenant } = useSession();
  const [strategy, setStrategy] = useState(policy?.strategy || "weighted");
  const [maxAttempts, setMaxAttempts] = useState(policy?.maxAttempts ? String(policy.maxAttempts) : "");
  const [totalTimeout, setTotalTimeout] = useState(policy?.totalTimeoutMs ? String(policy.totalTimeoutMs) : "");
  const [fallback, setFallback] = useState(policy?.fallbackModel ?? "");
  return (
    <form
      aria-label={`Policy of ${model}`}
      onSubmit={async (e) => {
        e.preventDefault();
        try {
          const attempts = maxAttempts.trim() ? Number(maxAttempts) : 0;
          const timeout = totalTimeout.trim() ? Number(totalTimeout) : 0;
          if (!Number.isInteger(attempts) || attempts < 0) throw new Error("Max attempts must be a whole number (empty: default).");
          if (!Number.isInteger(timeout) || timeout < 0) throw new Error("Total timeout must be whole milliseconds (empty: default).");
          // Fields this form does not show keep their values.
          const changes = { strategy, maxAttempts: attempts, totalTimeoutMs: BigInt(timeout), fallbackModel: fallback.trim() };
          await api.routes.setRoutePolicy({ tenant, model, policy: policy ? { ...policy, ...changes } : changes });
          await onSaved(`Policy of ${model} saved; data planes apply it with the next config version.`);
        } catch (err) {
          onError({ kind: "error", text: errorText(err) });
        }
      }}
    >
      <h2>Policy</h2>
      <label>
        Strategy
        <select aria-label="Strategy" value={strategy} onChange={(e) => setStrategy(e.target.value)}>
          {STRATEGIES.map((s) => (
            <option key={s}>{s}</option>
          ))}
        </select>
      </label>
      <label>
        Max attempts (empty: 3)
        <input inputMode="numeric" value={maxAttempts} onChange={(e) => setMaxAttempts(e.target.value)} />
      </label>
      <label>
        Total timeout, ms (empty: default)
        <input inputMode="numeric" value={totalTimeout} onChange={(e) => setTotalTimeout(e.target.value)} />
      </label>
      <label>
        Fallback model (context-length or content-policy refusals)
        <input value={fallback} onChange={(e) => setFallback(e.target.value)} />
      </label>
      <button type="submit">Save policy</button>
    </form>
  );
}
