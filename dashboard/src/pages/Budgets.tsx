import { useState } from "react";
import { errorText } from "../api";
import { ConfirmButton } from "../components/ConfirmButton";
import { Field } from "../components/Field";
import { Notice, type NoticeState } from "../components/Notice";
import { useLoad } from "../components/useLoad";
import { parseUsd, usd, when } from "../format";
import { can, useSession } from "../session";

const PERIODS = ["day", "week", "month"];

/** What a budget form holds, checked before it is sent. */
export type BudgetInput = { period: string; amount: string; soft: string; offset: string; webhook: string };

/** Validates the budget form; returns messages per field, or the request values. */
export function checkBudget(f: BudgetInput):
  | { ok: true; amountMicros: bigint; softMicros: bigint; utcOffsetMinutes: number; webhookUrl: string }
  | { ok: false; errors: Partial<Record<keyof BudgetInput, string>> } {
  const errors: Partial<Record<keyof BudgetInput, string>> = {};
  const amount = parseUsd(f.amount);
  if (typeof amount === "string") errors.amount = amount;
  else if (amount <= 0n) errors.amount = "The hard limit must be more than $0.";
  const soft = f.soft.trim() ? parseUsd(f.soft) : 0n;
  if (typeof soft === "string") errors.soft = soft;
  else if (typeof amount === "bigint" && soft > amount) errors.soft = "The alert threshold must not exceed the hard limit.";
  const offset = f.offset.trim() ? Number(f.offset) : 0;
  if (!Number.isInteger(offset) || offset < -14 * 60 || offset > 14 * 60) errors.offset = "Minutes east of UTC, between -840 and 840 (e.g. 60, -300).";
  const webhook = f.webhook.trim();
  if (webhook && !/^https?:\/\/\S+$/.test(webhook)) errors.webhook = "An http:// or https:// URL, or empty.";
  if (!PERIODS.includes(f.period)) errors.period = "Pick day, week or month.";
  if (Object.keys(errors).length) return { ok: false, errors };
  return { ok: true, amountMicros: amount as bigint, softMicros: soft as bigint, utcOffsetMinutes: offset, webhookUrl: webhook };
}

export default function Budgets() {
  const { api, tenant, role } = useSession();
  const [notice, setNotice] = useState<NoticeState>(null);
  const { data, error, reload } = useLoad(async () => {
    const [b, a, k] = await Promise.all([api.billing.listBudgets({ tenant }), api.billing.listBudgetAlerts({ tenant }), api.keys.listKeys({ tenant })]);
    // Tenant budgets first, then each key's, by key name.
    const names = new Map(k.keys.map((x) => [x.id, x.name]));
    const budgets = [...b.budgets].sort((x, y) => (x.keyId ? 1 : 0) - (y.keyId ? 1 : 0) || (names.get(x.keyId) ?? "").localeCompare(names.get(y.keyId) ?? ""));
    return { budgets, alerts: a.alerts, keys: k.keys.filter((x) => !x.revokedAtMs), names };
  }, [api, tenant]);
  const writable = can(role, "write");
  const [form, setForm] = useState<BudgetInput>({ period: "month", amount: "", soft: "", offset: "", webhook: "" });
  // "": the tenant's budget; else a caller key's id.
  const [key, setKey] = useState("");
  const scope = (keyId: string) => (keyId ? `key ${data?.names.get(keyId) ?? keyId}` : "tenant");
  const [errors, setErrors] = useState<Partial<Record<keyof BudgetInput, string>>>({});
  const set = (k: keyof BudgetInput) => (e: { target: { value: string } }) => setForm({ ...form, [k]: e.target.value });

  return (
    <>
      <Notice notice={notice} />
      {error && <p role="alert" className="notice error">{error}</p>}
      {!data && !error && <p role="status">Loading…</p>}
      {data && (
        <div className="scroll">
          <table>
            <caption>Budgets of {tenant}</caption>
            <thead>
              <tr>
                <th scope="col">Applies to</th>
                <th scope="col">Period</th>
                <th scope="col">Spent this period</th>
                <th scope="col" className="num">Hard limit</th>
                <th scope="col" className="num">Alert at</th>
                <th scope="col">Time zone</th>
                <th scope="col">Webhook</th>
                {writable && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {data.budgets.length === 0 && (
                <tr>
                  <td colSpan={8}>No budgets: spend is limited only by the balance.</td>
                </tr>
              )}
              {data.budgets.map((b) => {
                const pct = b.amountMicros > 0n ? Number((b.spentMicros * 1000n) / b.amountMicros) / 10 : 0;
                return (
                  <tr key={b.id}>
                    <td>{scope(b.keyId)}</td>
                    <td>{b.period}</td>
                    <td>
                      <meter min={0} max={100} value={Math.min(100, pct)} high={b.amountMicros ? Number((b.softMicros * 100n) / b.amountMicros) || 80 : 80} optimum={0} aria-label={`${b.period} budget used`} />{" "}
                      {usd(b.spentMicros)} ({pct.toFixed(1)}%)
                    </td>
                    <td className="num">{usd(b.amountMicros)}</td>
                    <td className="num">{b.softMicros ? usd(b.softMicros) : "—"}</td>
                    <td>{b.utcOffsetMinutes ? `UTC${b.utcOffsetMinutes > 0 ? "+" : "−"}${Math.abs(b.utcOffsetMinutes) / 60}h` : "UTC"}</td>
                    <td>{b.webhookUrl || "—"}</td>
                    {writable && (
                      <td>
                        <ConfirmButton
                          label={`Delete ${b.period} budget of ${scope(b.keyId)}`}
                          confirmLabel={`Really delete the ${b.period} budget of ${scope(b.keyId)}`}
                          onConfirm={async () => {
                            try {
                              await api.billing.deleteBudget({ tenant, period: b.period, key: b.keyId });
                              setNotice({ kind: "ok", text: `The ${b.period} budget of ${scope(b.keyId)} is deleted.` });
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
      {writable && (
        <form
          aria-label="Set a budget"
          noValidate
          onSubmit={async (e) => {
            e.preventDefault();
            const c = checkBudget(form);
            if (!c.ok) {
              setErrors(c.errors);
              return;
            }
            setErrors({});
            try {
              const b = await api.billing.setBudget({ tenant, key, period: form.period, amountMicros: c.amountMicros, softMicros: c.softMicros, utcOffsetMinutes: c.utcOffsetMinutes, webhookUrl: c.webhookUrl });
              setNotice({ kind: "ok", text: `Budget of ${scope(b.keyId)} set: ${usd(b.amountMicros)} per ${b.period}${b.softMicros ? `, alert at ${usd(b.softMicros)}` : ""}.` });
              setForm({ ...form, amount: "", soft: "" });
              await reload();
            } catch (err) {
              setNotice({ kind: "error", text: errorText(err) });
            }
          }}
        >
          <h2>Set a budget (replaces the period's budget)</h2>
          <Field label="Applies to">
            <select value={key} onChange={(e) => setKey(e.target.value)}>
              <option value="">the whole tenant</option>
              {data?.keys.map((k) => (
                <option key={k.id} value={k.id}>
                  key {k.name}
                </option>
              ))}
            </select>
          </Field>
          <Field label="Period" error={errors.period}>
            <select value={form.period} onChange={set("period")}>
              {PERIODS.map((p) => (
                <option key={p}>{p}</option>
              ))}
            </select>
          </Field>
          <Field label="Hard limit (USD; calls beyond it get 402 budget_exceeded)" error={errors.amount}>
            <input inputMode="decimal" value={form.amount} onChange={set("amount")} />
          </Field>
          <Field label="Alert threshold (USD, optional)" error={errors.soft}>
            <input inputMode="decimal" value={form.soft} onChange={set("soft")} />
          </Field>
          <Field label="UTC offset (minutes, optional)" error={errors.offset}>
            <input inputMode="numeric" value={form.offset} onChange={set("offset")} />
          </Field>
          <Field label="Alert webhook URL (optional)" error={errors.webhook}>
            <input type="url" value={form.webhook} onChange={set("webhook")} />
          </Field>
          <button type="submit">Save budget</button>
        </form>
      )}
      {data && (
        <div className="scroll">
          <table>
            <caption>Budget alerts (soft threshold crossed)</caption>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Budget of</th>
                <th scope="col">Period</th>
                <th scope="col">Period start</th>
                <th scope="col" className="num">Threshold</th>
                <th scope="col" className="num">Spent</th>
                <th scope="col">Webhook</th>
              </tr>
            </thead>
            <tbody>
              {data.alerts.length === 0 && (
                <tr>
                  <td colSpan={7}>No alerts.</td>
                </tr>
              )}
              {data.alerts.map((a) => (
                <tr key={a.id}>
                  <td>{when(a.createdAtMs)}</td>
                  <td>{scope(a.keyId)}</td>
                  <td>{a.period}</td>
                  <td>{when(a.periodStartMs)}</td>
                  <td className="num">{usd(a.thresholdMicros)}</td>
                  <td className="num">{usd(a.spentMicros)}</td>
                  <td>{a.deliveredAtMs ? `delivered ${when(a.deliveredAtMs)}` : "not delivered"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
