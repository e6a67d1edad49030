import { useState } from "react";
import { errorText } from "../api";
import { ConfirmButton } from "../components/ConfirmButton";
import { Field } from "../components/Field";
import { Notice, type NoticeState } from "../components/Notice";
import { useLoad } from "../components/useLoad";
import { num, when } from "../format";
import { can, useSession } from "../session";

/** Cache policies of the tenant, its models and its keys (the most specific applies). */
export default function Cache() {
  const { api, tenant, role } = useSession();
  const [notice, setNotice] = useState<NoticeState>(null);
  const { data, error, reload } = useLoad(async () => {
    const [c, k, m] = await Promise.all([api.cache.listCachePolicies({ tenant }), api.keys.listKeys({ tenant }), api.models.listModels({ tenant })]);
    return { policies: c.policies, keys: k.keys.filter((x) => !x.revokedAtMs), models: m.models };
  }, [api, tenant]);
  const writable = can(role, "write");
  const [scope, setScope] = useState("tenant");
  const [target, setTarget] = useState("");
  const [enabled, setEnabled] = useState(true);
  const [ttl, setTtl] = useState("");
  const [maxBytes, setMaxBytes] = useState("");
  const [deterministic, setDeterministic] = useState(false);
  const [hitPercent, setHitPercent] = useState("0");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const options = scope === "key" ? (data?.keys ?? []) : scope === "model" ? (data?.models ?? []) : [];
  const chosen = target || options[0]?.id || "";

  return (
    <>
      <Notice notice={notice} />
      <p className="hint">A call uses the policy of its key, else of its model, else of the tenant — as a whole. Without any policy nothing is cached.</p>
      {error && <p role="alert" className="notice error">{error}</p>}
      {!data && !error && <p role="status">Loading…</p>}
      {data && (
        <div className="scroll">
          <table>
            <caption>Cache policies of {tenant}</caption>
            <thead>
              <tr>
                <th scope="col">Applies to</th>
                <th scope="col">Cache</th>
                <th scope="col" className="num">TTL</th>
                <th scope="col" className="num">Max entry</th>
                <th scope="col">Only temperature 0</th>
                <th scope="col" className="num">Hit price</th>
                <th scope="col">Updated</th>
                {writable && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {data.policies.length === 0 && (
                <tr>
                  <td colSpan={8}>No cache policies: nothing is cached.</td>
                </tr>
              )}
              {data.policies.map((p) => {
                const s = p.settings;
                const where = p.scope === "tenant" ? "whole tenant" : `${p.scope} ${p.targetName}`;
                return (
                  <tr key={`${p.scope}/${p.targetId}`}>
                    <td>{where}</td>
                    <td>{s?.enabled ? "on" : "off"}</td>
                    <td className="num">{s?.ttlMs ? `${num(s.ttlMs / 1000n)} s` : "300 s (default)"}</td>
                    <td className="num">{s?.maxEntryBytes ? `${num(s.maxEntryBytes)} B` : "1 MiB (default)"}</td>
                    <td>{s?.onlyDeterministic ? "yes" : "no"}</td>
                    <td className="num">{s?.hitCostBps ? `${s.hitCostBps / 100}%` : "free"}</td>
                    <td>{when(p.updatedAtMs)}</td>
                    {writable && (
                      <td>
                        <ConfirmButton
                          label={`Clear policy of ${where}`}
                          confirmLabel={`Really clear the policy of ${where}`}
                          onConfirm={async () => {
                            try {
                              await api.cache.clearCachePolicy({ tenant, scope: { kind: p.scope, target: p.targetId } });
                              setNotice({ kind: "ok", text: `Policy of ${where} cleared.` });
                              await reload();
                            } catch (e) {
                              setNotice({ kind: "error", text: errorText(e) });
                            }
                          }}
                        />
                      </td>
                    )}
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {writable && data && (
        <form
          aria-label="Set a cache policy"
          noValidate
          onSubmit={async (e) => {
            e.preventDefault();
            const errs: Record<string, string> = {};
            const ttlS = ttl.trim() ? Number(ttl) : 0;
            if (!Number.isInteger(ttlS) || ttlS < 0 || ttlS > 30 * 86_400) errs.ttl = "Whole seconds, at most 30 days (empty: 300).";
            const mb = maxBytes.trim() ? Number(maxBytes) : 0;
            if (!Number.isInteger(mb) || mb < 0) errs.maxBytes = "Whole bytes (empty: 1 MiB).";
            const hp = Number(hitPercent);
            if (!/^\d+(\.\d{1,2})?$/.test(hitPercent.trim()) || hp > 100) errs.hit = "A percentage from 0 (free) to 100 (full price).";
            if (scope !== "tenant" && !chosen) errs.target = `No ${scope} to choose.`;
            setErrors(errs);
            if (Object.keys(errs).length) return;
            try {
              await api.cache.setCachePolicy({
                tenant,
                scope: { kind: scope, target: scope === "tenant" ? "" : chosen },
                settings: { enabled, ttlMs: BigInt(ttlS * 1000), maxEntryBytes: BigInt(mb), onlyDeterministic: deterministic, hitCostBps: Math.round(hp * 100) },
              });
              setNotice({ kind: "ok", text: "Cache policy saved; data planes apply it with the next config version." });
              await reload();
            } catch (err) {
              setNotice({ kind: "error", text: errorText(err) });
            }
          }}
        >
          <h2>Set a cache policy</h2>
          <Field label="Applies to">
            <select value={scope} onChange={(e) => { setScope(e.target.value); setTarget(""); }}>
              <option value="tenant">whole tenant</option>
              <option value="model">a model</option>
              <option value="key">a key</option>
            </select>
          </Field>
          {scope !== "tenant" && (
            <Field label={scope === "key" ? "Key" : "Model"} error={errors.target}>
              <select value={chosen} onChange={(e) => setTarget(e.target.value)}>
                {options.map((o) => (
                  <option key={o.id} value={o.id}>
                    {o.name}
                  </option>
                ))}
              </select>
            </Field>
          )}
          <label className="inline">
            <input type="checkbox" checked={enabled} onChange={(e) => setEnabled(e.target.checked)} /> Cache on
          </label>
          <Field label="TTL (seconds, empty: 300)" error={errors.ttl}>
            <input inputMode="numeric" value={ttl} onChange={(e) => setTtl(e.target.value)} />
          </Field>
          <Field label="Max entry (bytes, empty: 1 MiB)" error={errors.maxBytes}>
            <input inputMode="numeric" value={maxBytes} onChange={(e) => setMaxBytes(e.target.value)} />
          </Field>
          <label className="inline">
            <input type="checkbox" checked={deterministic} onChange={(e) => setDeterministic(e.target.checked)} /> Only temperature 0
          </label>
          <Field label="Hit price (% of full price)" error={errors.hit}>
            <input inputMode="decimal" value={hitPercent} onChange={(e) => setHitPercent(e.target.value)} />
          </Field>
          <button type="submit">Save policy</button>
        </form>
      )}
    </>
  );
}
