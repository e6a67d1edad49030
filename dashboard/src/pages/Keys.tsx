import { useState } from "react";
import { errorText } from "../api";
import { ConfirmButton } from "../components/ConfirmButton";
import { CopyButton } from "../components/CopyButton";
import { Field } from "../components/Field";
import { Notice, type NoticeState } from "../components/Notice";
import { useLoad } from "../components/useLoad";
import { parseUsd, usd, when } from "../format";
import type { Budget } from "../gen/tollgate/admin/v1/billing_pb";
import { can, useSession } from "../session";
import { RegenerateKey } from "./RegenerateKey";

const PERIODS = ["day", "week", "month"];

/** A key's budget typed in the create form or a row: empty amount = none. */
export function checkKeyBudget(amount: string): bigint | null | string {
  if (!amount.trim()) return null;
  const v = parseUsd(amount);
  if (typeof v === "string") return v;
  if (v <= 0n) return "The budget must be more than $0 (empty: none).";
  return v;
}

/** A key's own budgets: shown, set and deleted in its row. */
function KeyBudgets({ keyId, keyName, budgets, writable, onDone }: { keyId: string; keyName: string; budgets: Budget[]; writable: boolean; onDone: (n: NoticeState) => Promise<void> }) {
  const { api, tenant } = useSession();
  const [open, setOpen] = useState(false);
  const [period, setPeriod] = useState("month");
  const [amount, setAmount] = useState("");
  const [err, setErr] = useState<string | undefined>();
  return (
    <>
      {budgets.length === 0 ? "none" : budgets.map((b) => (
        <span key={b.id} className="key-budget">
          {usd(b.amountMicros)}/{b.period} (spent {usd(b.spentMicros)})
          {writable && (
            <>
              {" "}
              <ConfirmButton
                label={`Delete ${b.period} budget of ${keyName}`}
                confirmLabel={`Really delete the ${b.period} budget of ${keyName}`}
                onConfirm={async () => {
                  try {
                    await api.billing.deleteBudget({ tenant, period: b.period, key: keyId });
                    await onDone({ kind: "ok", text: `The ${b.period} budget of key ${keyName} is deleted.` });
                  } catch (e) {
                    await onDone({ kind: "error", text: errorText(e) });
                  }
                }}
              />
            </>
          )}
        </span>
      ))}
      {writable && !open && (
        <>
          {" "}
          <button type="button" onClick={() => setOpen(true)}>
            Set budget of {keyName}
          </button>
        </>
      )}
      {writable && open && (
        <form
          className="inline-form"
          aria-label={`Budget of ${keyName}`}
          noValidate
          onSubmit={async (e) => {
            e.preventDefault();
            const v = checkKeyBudget(amount);
            if (v === null || typeof v === "string") {
              setErr(v ?? "Enter a budget in dollars, like 25.");
              return;
            }
            setErr(undefined);
            try {
              const b = await api.billing.setBudget({ tenant, key: keyId, period, amountMicros: v });
              setOpen(false);
              setAmount("");
              await onDone({ kind: "ok", text: `Budget of key ${keyName} set: ${usd(b.amountMicros)} per ${b.period}.` });
            } catch (e2) {
              await onDone({ kind: "error", text: errorText(e2) });
            }
          }}
        >
          <Field label={`Budget period of ${keyName}`}>
            <select value={period} onChange={(e) => setPeriod(e.target.value)}>
              {PERIODS.map((p) => (
                <option key={p}>{p}</option>
              ))}
            </select>
          </Field>
          <Field label={`Budget of ${keyName} (USD)`} error={err}>
            <input inputMode="decimal" value={amount} onChange={(e) => setAmount(e.target.value)} />
          </Field>
          <button type="submit">Save</button>
          <button type="button" onClick={() => setOpen(false)}>
            Cancel
          </button>
        </form>
      )}
    </>
  );
}

export default function Keys() {
  const { api, tenant, role } = useSession();
  const [notice, setNotice] = useState<NoticeState>(null);
  const [created, setCreated] = useState<{ name: string; secret: string; regenerated?: boolean } | null>(null);
  const [name, setName] = useState("");
  const [days, setDays] = useState("");
  const [providers, setProviders] = useState<string[]>([]);
  const [models, setModels] = useState<string[]>([]);
  const [budget, setBudget] = useState("");
  const [budgetPeriod, setBudgetPeriod] = useState("month");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [busy, setBusy] = useState(false);
  const { data, error, reload } = useLoad(async () => {
    const [k, p, m, g, b] = await Promise.all([
      api.keys.listKeys({ tenant }),
      api.providers.listProviders({ tenant }),
      api.models.listModels({ tenant }),
      api.guardrails.listGuardrails({ tenant }),
      api.billing.listBudgets({ tenant }),
    ]);
    const budgets = new Map<string, Budget[]>();
    for (const x of b.budgets) if (x.keyId) budgets.set(x.keyId, [...(budgets.get(x.keyId) ?? []), x]);
    // Model allowlists are `model` guardrails attached to the key.
    const allow = new Map<string, string[]>();
    for (const gr of g.guardrails) {
      if (gr.kind !== "model") continue;
      let names: string[] = [];
      try {
        names = (JSON.parse(gr.settings) as { allow?: string[] }).allow ?? [];
      } catch {
        continue;
      }
      for (const a of gr.attachments) if (a.scope === "key") allow.set(a.targetId, [...(allow.get(a.targetId) ?? []), ...names]);
    }
    return { keys: k.keys, providers: p.providers, models: m.models, allow, budgets };
  }, [api, tenant]);
  const providerName = (id: string) => data?.providers.find((p) => p.id === id)?.name ?? id;

  return (
    <>
      <Notice notice={notice} />
      {created && (
        <section className="secret" aria-label="New caller key">
          <p>
            Key <strong>{created.name}</strong> {created.regenerated ? "regenerated: its old secret no longer works" : "created"}. Copy it now: it is shown only once.
          </p>
          <p>
            <code data-testid="new-key">{created.secret}</code> <CopyButton text={created.secret} label="Copy key" />
          </p>
          <button type="button" onClick={() => setCreated(null)}>
            I have copied it
          </button>
        </section>
      )}
      {error && <p role="alert" className="notice error">{error}</p>}
      {data && (
        <div className="scroll">
        <table>
          <caption>Caller keys of {tenant}</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Prefix</th>
              <th scope="col">Created</th>
              <th scope="col">Expires</th>
              <th scope="col">Providers</th>
              <th scope="col">Models</th>
              <th scope="col">Budget</th>
              <th scope="col">State</th>
              {can(role, "createKey") && <th scope="col">Actions</th>}
            </tr>
          </thead>
          <tbody>
            {data.keys.length === 0 && (
              <tr>
                <td colSpan={9}>No keys yet.</td>
              </tr>
            )}
            {data.keys.map((k) => (
              <tr key={k.id}>
                <td>{k.name}</td>
                <td>
                  <code>{k.prefix}…</code>
                </td>
                <td>{when(k.createdAtMs)}</td>
                <td>{k.expiresAtMs ? when(k.expiresAtMs) : "never"}</td>
                <td>{k.allowedProviderIds.length ? k.allowedProviderIds.map(providerName).join(", ") : "all"}</td>
                <td>{data.allow.get(k.id)?.join(", ") ?? "all"}</td>
                <td>
                  <KeyBudgets
                    keyId={k.id}
                    keyName={k.name}
                    budgets={data.budgets.get(k.id) ?? []}
                    writable={can(role, "write") && !k.revokedAtMs}
                    onDone={async (n) => {
                      setNotice(n);
                      await reload();
                    }}
                  />
                </td>
                <td>{k.revokedAtMs ? `revoked ${when(k.revokedAtMs)}` : "active"}</td>
                {/* Members may revoke the keys they created; the API says so otherwise. */}
                {can(role, "createKey") && (
                  <td>
                    {!k.revokedAtMs && (!k.expiresAtMs || k.expiresAtMs > BigInt(Date.now())) && (
                      <RegenerateKey
                        keyId={k.id}
                        keyName={k.name}
                        onRegenerated={async (keyName, secret) => {
                          setCreated({ name: keyName, secret, regenerated: true });
                          setNotice(null);
                          await reload();
                        }}
                        onError={(text) => setNotice({ kind: "error", text })}
                      />
                    )}{" "}
                    {!k.revokedAtMs && (
                      <ConfirmButton
                        label={`Revoke ${k.name}`}
                        confirmLabel={`Really revoke ${k.name}`}
                        onConfirm={async () => {
                          try {
                            await api.keys.revokeKey({ tenant, key: k.id });
                            setNotice({ kind: "ok", text: `Key ${k.name} revoked.` });
                            await reload();
                          } catch (e) {
                            setNotice({ kind: "error", text: errorText(e) });
                          }
                        }}
                      />
                    )}
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
        </div>
      )}
      {can(role, "createKey") && data && (
        <form
          aria-label="Create a caller key"
          noValidate
          onSubmit={async (e) => {
            e.preventDefault();
            const errs: Record<string, string> = {};
            if (!/^\S{1,200}$/.test(name.trim())) errs.name = "A name without spaces.";
            else if (data.keys.some((k) => k.name === name.trim())) errs.name = `A key named ${name.trim()} exists already.`;
            const d = days.trim() ? Number(days) : 0;
            if (!Number.isInteger(d) || d < 0) errs.days = "Expiry must be a whole number of days (empty: never).";
            const budgetMicros = checkKeyBudget(budget);
            if (typeof budgetMicros === "string") errs.budget = budgetMicros;
            setErrors(errs);
            if (Object.keys(errs).length) return;
            setBusy(true);
            const keyName = name.trim();
            try {
              const expiresAtMs = d ? BigInt(Date.now() + d * 86_400_000) : 0n;
              // A model allowlist is a `model` guardrail attached to the key:
              // made first, attached before the key is shown, and undone if
              // any step fails, so a key is never handed out unrestricted.
              const guard = models.length
                ? await api.guardrails.createGuardrail({ tenant, name: `key-${keyName}-models`, kind: "model", action: "block", direction: "input", settings: JSON.stringify({ allow: models }) })
                : null;
              let r;
              try {
                r = await api.keys.createKey({ tenant, name: keyName, expiresAtMs, providers });
                if (guard) await api.guardrails.attachGuardrail({ tenant, guardrail: guard.id, scope: "key", target: r.key?.id ?? keyName });
                // The key's own budget, set before the key is shown (402 budget_exceeded when used up).
                if (typeof budgetMicros === "bigint") await api.billing.setBudget({ tenant, key: r.key?.id ?? keyName, period: budgetPeriod, amountMicros: budgetMicros });
              } catch (err) {
                if (r) await api.keys.revokeKey({ tenant, key: r.key?.id ?? keyName }).catch(() => undefined);
                if (guard) await api.guardrails.deleteGuardrail({ tenant, guardrail: guard.id }).catch(() => undefined);
                throw err;
              }
              setCreated({ name: r.key?.name ?? keyName, secret: r.secret });
              setNotice(null);
              setName("");
              setProviders([]);
              setModels([]);
              setBudget("");
              await reload();
            } catch (err) {
              setNotice({ kind: "error", text: errorText(err) });
            } finally {
              setBusy(false);
            }
          }}
        >
          <h2>Create a caller key</h2>
          <Field label="Name" error={errors.name}>
            <input value={name} onChange={(e) => setName(e.target.value)} />
          </Field>
          <Field label="Expires after (days, empty: never)" error={errors.days}>
            <input inputMode="numeric" value={days} onChange={(e) => setDays(e.target.value)} />
          </Field>
          <fieldset>
            <legend>Providers (none ticked: all)</legend>
            {data.providers.length === 0 && <span className="hint">No providers yet.</span>}
            {data.providers.map((p) => (
              <label key={p.id} className="inline">
                <input
                  type="checkbox"
                  checked={providers.includes(p.name)}
                  onChange={(e) => setProviders(e.target.checked ? [...providers, p.name] : providers.filter((x) => x !== p.name))}
                />{" "}
                {p.name}
              </label>
            ))}
          </fieldset>
          {can(role, "write") && (<fieldset>
            <legend>Models (none ticked: all)</legend>
            {data.models.length === 0 && <span className="hint">No models yet.</span>}
            {data.models.map((m) => (
              <label key={m.id} className="inline">
                <input
                  type="checkbox"
                  checked={models.includes(m.name)}
                  onChange={(e) => setModels(e.target.checked ? [...models, m.name] : models.filter((x) => x !== m.name))}
                />{" "}
                {m.name}
              </label>
            ))}
          </fieldset>)}
          {can(role, "write") && (
            <>
              <Field label="Budget (USD, optional; calls beyond it get 402)" error={errors.budget}>
                <input inputMode="decimal" value={budget} onChange={(e) => setBudget(e.target.value)} />
              </Field>
              <Field label="Budget period">
                <select value={budgetPeriod} onChange={(e) => setBudgetPeriod(e.target.value)}>
                  {PERIODS.map((p) => (
                    <option key={p}>{p}</option>
                  ))}
                </select>
              </Field>
            </>
          )}
          <button type="submit" disabled={busy}>
            Create key
          </button>
          <p className="hint" style={{ flexBasis: "100%" }}>
            A key's budget caps what it may spend per period on top of the tenant's budgets (Budgets page). Regenerate gives a key a new secret and keeps everything else; the old secret stops working at once.
          </p>
        </form>
      )}
    </>
  );
}
