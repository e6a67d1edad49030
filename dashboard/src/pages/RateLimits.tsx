import { useState } from "react";
import { errorText } from "../api";
import { ConfirmButton } from "../components/ConfirmButton";
import { Field } from "../components/Field";
import { Notice, type NoticeState } from "../components/Notice";
import { useLoad } from "../components/useLoad";
import { num, when } from "../format";
import type { RateLimitValues } from "../gen/tollgate/admin/v1/rate_limits_pb";
import { can, useSession } from "../session";

/** The six limits of a set and its queue settings, in the order they are shown. */
export const LIMIT_FIELDS = [
  ["requestsPerSecond", "Requests / second", "RPS"],
  ["requestsPerMinute", "Requests / minute", "RPM"],
  ["requestsPerDay", "Requests / day", "RPD"],
  ["tokensPerMinute", "Tokens / minute", "TPM"],
  ["tokensPerDay", "Tokens / day", "TPD"],
  ["maxConcurrent", "Concurrent calls", "Concurrent"],
  // The optional wait for a concurrency slot (docs/rate-limits.md): kept
  // here so saving a set never drops a queue set through the CLI or API.
  ["queueMs", "Queue wait (ms) for a concurrency slot", "Queue ms"],
  ["queueDepth", "Queued calls at most", "Queue depth"],
] as const;

/** Column headers: short, with the full name for screen readers and on hover. */
function LimitHeaders() {
  return (
    <>
      {LIMIT_FIELDS.map(([k, label, short]) => (
        <th key={k} scope="col" className="num">
          <abbr title={label} aria-label={label}>
            {short}
          </abbr>
        </th>
      ))}
    </>
  );
}

export type LimitKey = (typeof LIMIT_FIELDS)[number][0];
export type LimitInput = Record<LimitKey, string>;
export type LimitValues = Record<LimitKey, bigint>;

/** Largest value the control plane accepts (2^50). */
export const MAX_LIMIT = 1n << 50n;

export const emptyLimits = (): LimitInput => ({
  requestsPerSecond: "",
  requestsPerMinute: "",
  requestsPerDay: "",
  tokensPerMinute: "",
  tokensPerDay: "",
  maxConcurrent: "",
  queueMs: "",
  queueDepth: "",
});

/**
 * Checks typed limits: each empty (not limited here, or the tier's value) or a
 * whole number from 1 to 2^50. With `needSome`, at least one limit or a tier.
 */
export function checkLimits(input: LimitInput, tier: string, needSome = true): { ok: true; values: LimitValues } | { ok: false; errors: Record<string, string> } {
  const errors: Record<string, string> = {};
  const values = {} as LimitValues;
  for (const [k] of LIMIT_FIELDS) {
    const s = input[k].trim();
    if (s === "") {
      values[k] = 0n;
      continue;
    }
    if (!/^\d+$/.test(s)) {
      errors[k] = s.startsWith("-") ? "Must not be negative." : "A whole number (empty: not limited here).";
      continue;
    }
    const n = BigInt(s);
    if (n === 0n) errors[k] = "At least 1 (leave empty for no limit).";
    else if (n > MAX_LIMIT) errors[k] = `At most ${MAX_LIMIT}.`;
    else values[k] = n;
  }
  if (needSome && !Object.keys(errors).length && !tier && LIMIT_FIELDS.every(([k]) => values[k] === 0n)) {
    errors.form = "Set at least one limit or a tier.";
  }
  return Object.keys(errors).length ? { ok: false, errors } : { ok: true, values };
}

/** A limit for a table cell: "—" when not limited. */
function show(v: bigint | undefined) {
  return v ? num(v) : "—";
}

function LimitCells({ v }: { v: RateLimitValues | undefined }) {
  return (
    <>
      {LIMIT_FIELDS.map(([k]) => (
        <td key={k} className="num">
          {show(v?.[k])}
        </td>
      ))}
    </>
  );
}

function LimitInputs({ input, errors, set }: { input: LimitInput; errors: Record<string, string>; set: (i: LimitInput) => void }) {
  return (
    <>
      {LIMIT_FIELDS.map(([k, label]) => (
        <Field key={k} label={label} error={errors[k]}>
          <input inputMode="numeric" value={input[k]} onChange={(e) => set({ ...input, [k]: e.target.value })} />
        </Field>
      ))}
    </>
  );
}

/** Rate limits of the tenant, its models and its keys, and the operator's tiers. */
export default function RateLimits() {
  const { api, tenant, role, isOperator } = useSession();
  const [notice, setNotice] = useState<NoticeState>(null);
  const { data, error, reload } = useLoad(async () => {
    const [l, t, k, m] = await Promise.all([
      api.rateLimits.listRateLimits({ tenant }),
      api.rateLimits.listRateLimitTiers({}),
      api.keys.listKeys({ tenant }),
      api.models.listModels({ tenant }),
    ]);
    return { limits: l.limits, tiers: t.tiers, keys: k.keys.filter((x) => !x.revokedAtMs), models: m.models };
  }, [api, tenant]);
  const writable = can(role, "write");
  const tiersWritable = isOperator && can(role, "write");
  const [scope, setScope] = useState("tenant");
  const [target, setTarget] = useState("");
  const [tier, setTier] = useState("");
  const [input, setInput] = useState<LimitInput>(emptyLimits);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [tierName, setTierName] = useState("");
  const [tierInput, setTierInput] = useState<LimitInput>(emptyLimits);
  const [tierErrors, setTierErrors] = useState<Record<string, string>>({});
  const options: { value: string; label: string }[] =
    scope === "key" ? (data?.keys ?? []).map((k) => ({ value: k.id, label: k.name })) : scope === "model" ? (data?.models ?? []).map((x) => ({ value: x.id, label: x.name })) : [];
  const chosen = target || options[0]?.value || "";

  return (
    <>
      <Notice notice={notice} />
      <p className="hint">
        Every call must pass every limit that applies to it: its key&apos;s, its model&apos;s and the tenant&apos;s. Empty values are not limited here (or take the tier&apos;s value). Over a limit, calls get 429 with Retry-After. The table shows the effective values (a set&apos;s own over its tier&apos;s); saving replaces the whole set of the chosen scope.
      </p>
      {error && <p role="alert" className="notice error">{error}</p>}
      {!data && !error && <p role="status">Loading…</p>}
      {data && (
        <div className="scroll">
          <table>
            <caption>Rate limits of {tenant}</caption>
            <thead>
              <tr>
                <th scope="col">Applies to</th>
                <th scope="col">Tier</th>
                <LimitHeaders />
                <th scope="col">Updated</th>
                {writable && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {data.limits.length === 0 && (
                <tr>
                  <td colSpan={10}>No rate limits: calls are not limited.</td>
                </tr>
              )}
              {data.limits.map((l) => {
                const where = l.scope === "tenant" ? "whole tenant" : `${l.scope} ${l.targetName || l.targetId}`;
                return (
                  <tr key={`${l.scope}/${l.targetId}`}>
                    <td>{where}</td>
                    <td>{l.tier || "—"}</td>
                    <LimitCells v={l.effective} />
                    <td className="when">{when(l.updatedAtMs)}</td>
                    {writable && (
                      <td className="actions">
                        <button
                          type="button"
                          aria-label={`Edit limits of ${where}`}
                          onClick={() => {
                            // The set's own values (not the effective ones), since saving replaces the set.
                            setScope(l.scope);
                            setTarget(l.scope === "model" || l.scope === "key" ? l.targetId : "");
                            setTier(l.tier);
                            setInput(Object.fromEntries(LIMIT_FIELDS.map(([k]) => [k, l.limits?.[k] ? String(l.limits[k]) : ""])) as LimitInput);
                            setErrors({});
                            document.getElementById("set-limits")?.scrollIntoView?.({ block: "start" });
                          }}
                        >
                          Edit
                        </button>{" "}
                        <ConfirmButton
                          label={`Clear limits of ${where}`}
                          confirmLabel={`Really clear the limits of ${where}`}
                          onConfirm={async () => {
                            try {
                              await api.rateLimits.clearRateLimit({ tenant, scope: { kind: l.scope, target: l.scope === "tenant" ? "" : l.targetId } });
                              setNotice({ kind: "ok", text: `Limits of ${where} cleared.` });
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
          id="set-limits"
          aria-label="Set rate limits"
          noValidate
          onSubmit={async (e) => {
            e.preventDefault();
            const c = checkLimits(input, tier);
            const errs = c.ok ? {} : { ...c.errors };
            if (scope !== "tenant" && !chosen) errs.target = `No ${scope} to choose.`;
            setErrors(errs);
            if (!c.ok || Object.keys(errs).length) return;
            try {
              await api.rateLimits.setRateLimit({ tenant, scope: { kind: scope, target: scope === "tenant" ? "" : chosen }, limits: c.values, tier });
              setNotice({ kind: "ok", text: "Rate limits saved; data planes apply them with the next config version." });
              await reload();
            } catch (err) {
              setNotice({ kind: "error", text: errorText(err) });
            }
          }}
        >
          <h2>Set rate limits</h2>
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
                  <option key={o.value} value={o.value}>
                    {o.label}
                  </option>
                ))}
              </select>
            </Field>
          )}
          <Field label="Tier">
            <select value={tier} onChange={(e) => setTier(e.target.value)}>
              <option value="">none</option>
              {data.tiers.map((t) => (
                <option key={t.name}>{t.name}</option>
              ))}
            </select>
          </Field>
          <LimitInputs input={input} errors={errors} set={setInput} />
          {errors.form && <p role="alert" className="field-error">{errors.form}</p>}
          <button type="submit">Save limits</button>
        </form>
      )}
      {data && (
        <>
          <h2>Tiers</h2>
          <div className="scroll">
            <table>
              <caption>Tiers (named sets of limits)</caption>
              <thead>
                <tr>
                  <th scope="col">Tier</th>
                  <LimitHeaders />
                  <th scope="col">Updated</th>
                  {tiersWritable && <th scope="col">Actions</th>}
                </tr>
              </thead>
              <tbody>
                {data.tiers.length === 0 && (
                  <tr>
                    <td colSpan={9}>No tiers.</td>
                  </tr>
                )}
                {data.tiers.map((t) => (
                  <tr key={t.name}>
                    <td>{t.name}</td>
                    <LimitCells v={t.limits} />
                    <td className="when">{when(t.updatedAtMs)}</td>
                    {tiersWritable && (
                      <td className="actions">
                        <ConfirmButton
                          label={`Delete tier ${t.name}`}
                          confirmLabel={`Really delete tier ${t.name}`}
                          onConfirm={async () => {
                            try {
                              await api.rateLimits.deleteRateLimitTier({ name: t.name });
                              setNotice({ kind: "ok", text: `Tier ${t.name} deleted.` });
                              await reload();
                            } catch (e) {
                              setNotice({ kind: "error", text: errorText(e) });
                            }
                          }}
                        />
                      </td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
      {tiersWritable && data && (
        <form
          aria-label="Set a tier"
          noValidate
          onSubmit={async (e) => {
            e.preventDefault();
            const name = tierName.trim();
            const c = checkLimits(tierInput, "", true);
            const errs = c.ok ? {} : { ...c.errors };
            if (!/^\S{1,200}$/.test(name)) errs.name = "A name without spaces (e.g. free, pro).";
            setTierErrors(errs);
            if (!c.ok || Object.keys(errs).length) return;
            try {
              await api.rateLimits.setRateLimitTier({ name, limits: c.values });
              setNotice({ kind: "ok", text: `Tier ${name} saved.` });
              await reload();
            } catch (err) {
              setNotice({ kind: "error", text: errorText(err) });
            }
          }}
        >
          <h2>Set a tier</h2>
          <Field label="Tier name" error={tierErrors.name}>
            <input value={tierName} onChange={(e) => setTierName(e.target.value)} />
          </Field>
          <LimitInputs input={tierInput} errors={tierErrors} set={setTierInput} />
          {tierErrors.form && <p role="alert" className="field-error">{tierErrors.form}</p>}
          <button type="submit">Save tier</button>
        </form>
      )}
    </>
  );
}
