import { useState } from "react";
import { errorText } from "../api";
import { ConfirmButton } from "../components/ConfirmButton";
import { Field } from "../components/Field";
import { Notice, type NoticeState } from "../components/Notice";
import { useLoad } from "../components/useLoad";
import { num, parseUsd, usd, when } from "../format";
import { can, useSession } from "../session";

/** The price buckets, in USD per million tokens (micro-dollars per Mtok on the wire). */
const BUCKETS = [
  ["input", "Input"],
  ["cacheRead", "Cache read"],
  ["cacheWrite", "Cache write"],
  ["output", "Output"],
  ["reasoning", "Reasoning"],
] as const;

export type PriceInput = {
  model: string;
  provider: string;
  input: string;
  cacheRead: string;
  cacheWrite: string;
  output: string;
  reasoning: string;
  maxOutput: string;
};

export type PriceValuesOut = {
  inputPerMtok: bigint;
  cacheReadPerMtok: bigint;
  cacheWritePerMtok: bigint;
  outputPerMtok: bigint;
  reasoningPerMtok?: bigint;
  perRequestMicros: bigint;
  maxOutputTokens: bigint;
};

/**
 * Validates the price form. Each bucket is dollars per million tokens parsed
 * exactly into micro-dollars (parseUsd: "0.15" → 150000, never a float);
 * empty cache buckets are $0, an empty reasoning price means "as output".
 */
export function checkPrice(f: PriceInput):
  | { ok: true; model: string; provider: string; price: PriceValuesOut }
  | { ok: false; errors: Partial<Record<keyof PriceInput, string>> } {
  const errors: Partial<Record<keyof PriceInput, string>> = {};
  if (!f.model.trim()) errors.model = "Pick a model.";
  const parse = (k: "input" | "cacheRead" | "cacheWrite" | "output" | "reasoning", required: boolean): bigint | undefined => {
    const t = f[k].trim();
    if (!t) {
      if (required) errors[k] = "Enter a price in USD per million tokens, like 2.50 (0 for free).";
      return undefined;
    }
    const v = parseUsd(t);
    if (typeof v === "string") {
      errors[k] = v.replace("an amount in dollars", "a price in USD per million tokens");
      return undefined;
    }
    return v;
  };
  const input = parse("input", true);
  const output = parse("output", true);
  const cacheRead = parse("cacheRead", false) ?? 0n;
  const cacheWrite = parse("cacheWrite", false) ?? 0n;
  const reasoning = parse("reasoning", false);
  let maxOutput = 0n;
  const mo = f.maxOutput.trim();
  if (mo) {
    if (!/^\d{1,9}$/.test(mo)) errors.maxOutput = "A whole number of tokens (empty or 0: the data plane default, 4096).";
    else maxOutput = BigInt(mo);
  }
  if (Object.keys(errors).length) return { ok: false, errors };
  return {
    ok: true,
    model: f.model.trim(),
    provider: f.provider.trim(),
    price: {
      inputPerMtok: input as bigint,
      cacheReadPerMtok: cacheRead,
      cacheWritePerMtok: cacheWrite,
      outputPerMtok: output as bigint,
      reasoningPerMtok: reasoning,
      perRequestMicros: 0n,
      maxOutputTokens: maxOutput,
    },
  };
}

const EMPTY: PriceInput = { model: "", provider: "", input: "", cacheRead: "", cacheWrite: "", output: "", reasoning: "", maxOutput: "" };

/** $ per Mtok from micro-dollars per Mtok, without trailing zeros beyond cents. */
export function perMtok(micros: bigint): string {
  return usd(micros).replace(/(\.\d\d\d*?)0+$/, "$1");
}

export default function Prices() {
  const { api, tenant, role, isOperator } = useSession();
  const [notice, setNotice] = useState<NoticeState>(null);
  const { data, error, reload } = useLoad(async () => {
    const [p, m] = await Promise.all([api.billing.listPrices({ tenant }), api.models.listModels({ tenant })]);
    return { prices: p.prices, models: m.models };
  }, [api, tenant]);
  // SetPrice and DeletePrice are operator actions; tenants read their prices.
  const writable = isOperator && can(role, "write");
  const [form, setForm] = useState<PriceInput>(EMPTY);
  const [errors, setErrors] = useState<Partial<Record<keyof PriceInput, string>>>({});
  const set = (k: keyof PriceInput) => (e: { target: { value: string } }) => setForm({ ...form, [k]: e.target.value });
  const modelNames = data ? [...new Set(data.models.map((m) => m.name))].sort() : [];
  const providersOf = (model: string) => (data ? [...new Set(data.models.filter((m) => m.name === model).map((m) => m.providerName))].sort() : []);

  return (
    <>
      <p>Prices are in USD per million tokens. A price for one provider target overrides the model's price for calls served by that provider. Calls of a model without a price cost $0.</p>
      <Notice notice={notice} />
      {error && <p role="alert" className="notice error">{error}</p>}
      {!data && !error && <p role="status">Loading…</p>}
      {data && (
        <div className="scroll">
          <table>
            <caption>Prices of {tenant} (USD per million tokens)</caption>
            <thead>
              <tr>
                <th scope="col">Model</th>
                <th scope="col">Provider</th>
                <th scope="col" className="num">Input</th>
                <th scope="col" className="num">Cache read</th>
                <th scope="col" className="num">Cache write</th>
                <th scope="col" className="num">Output</th>
                <th scope="col" className="num">Reasoning</th>
                <th scope="col" className="num">Max output tokens</th>
                <th scope="col">Updated</th>
                {writable && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {data.prices.length === 0 && (
                <tr>
                  <td colSpan={10}>No prices: calls cost $0.</td>
                </tr>
              )}
              {data.prices.map((p) => {
                const v = p.price;
                const name = `${p.model}${p.provider ? ` via ${p.provider}` : ""}`;
                return (
                  <tr key={`${p.model}/${p.provider}`}>
                    <td>{p.model}</td>
                    <td>{p.provider || "every target"}</td>
                    <td className="num">{v ? perMtok(v.inputPerMtok) : "—"}</td>
                    <td className="num">{v ? perMtok(v.cacheReadPerMtok) : "—"}</td>
                    <td className="num">{v ? perMtok(v.cacheWritePerMtok) : "—"}</td>
                    <td className="num">{v ? perMtok(v.outputPerMtok) : "—"}</td>
                    <td className="num">{v?.reasoningPerMtok !== undefined ? perMtok(v.reasoningPerMtok) : "as output"}</td>
                    <td className="num">{v?.maxOutputTokens ? num(v.maxOutputTokens) : "default"}</td>
                    <td>{when(p.updatedAtMs)}</td>
                    {writable && (
                      <td className="actions">
                        <button
                          type="button"
                          onClick={() =>
                            setForm({
                              model: p.model,
                              provider: p.provider,
                              input: v ? perMtok(v.inputPerMtok).replace("$", "") : "",
                              cacheRead: v ? perMtok(v.cacheReadPerMtok).replace("$", "") : "",
                              cacheWrite: v ? perMtok(v.cacheWritePerMtok).replace("$", "") : "",
                              output: v ? perMtok(v.outputPerMtok).replace("$", "") : "",
                              reasoning: v?.reasoningPerMtok !== undefined ? perMtok(v.reasoningPerMtok).replace("$", "") : "",
                              maxOutput: v?.maxOutputTokens ? String(v.maxOutputTokens) : "",
                            })
                          }
                        >
                          Edit {name}
                        </button>{" "}
                        <ConfirmButton
                          label={`Delete price of ${name}`}
                          confirmLabel={`Really delete the price of ${name}`}
                          onConfirm={async () => {
                            try {
                              await api.billing.deletePrice({ tenant, model: p.model, provider: p.provider });
                              setNotice({ kind: "ok", text: `The price of ${name} is deleted.` });
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
      {!writable && <p>Prices are set by the operator of this installation.</p>}
      {writable && data && (
        <form
          aria-label="Set a price"
          noValidate
          onSubmit={async (e) => {
            e.preventDefault();
            const c = checkPrice(form);
            if (!c.ok) {
              setErrors(c.errors);
              return;
            }
            setErrors({});
            try {
              const p = await api.billing.setPrice({ tenant, model: c.model, provider: c.provider, price: c.price });
              setNotice({ kind: "ok", text: `Price of ${p.model}${p.provider ? ` via ${p.provider}` : ""} saved.` });
              setForm(EMPTY);
              await reload();
            } catch (err) {
              setNotice({ kind: "error", text: errorText(err) });
            }
          }}
        >
          <h2>Set a price (replaces the model's or target's price)</h2>
          <Field label="Model" error={errors.model}>
            <select value={form.model} onChange={(e) => setForm({ ...form, model: e.target.value, provider: "" })}>
              <option value="">—</option>
              {modelNames.map((m) => (
                <option key={m}>{m}</option>
              ))}
            </select>
          </Field>
          <Field label="Provider target" error={errors.provider}>
            <select value={form.provider} onChange={set("provider")}>
              <option value="">every target</option>
              {providersOf(form.model).map((p) => (
                <option key={p}>{p}</option>
              ))}
            </select>
          </Field>
          {BUCKETS.map(([k, label]) => (
            <Field key={k} label={`${label} (USD per million tokens${k === "reasoning" ? "; empty: as output" : k.startsWith("cache") ? "; empty: 0" : ""})`} error={errors[k]}>
              <input inputMode="decimal" value={form[k]} onChange={set(k)} />
            </Field>
          ))}
          <Field label="Max output tokens (assumed when a call sets none; empty: 4096)" error={errors.maxOutput}>
            <input inputMode="numeric" value={form.maxOutput} onChange={set("maxOutput")} />
          </Field>
          <button type="submit">Save price</button>
        </form>
      )}
    </>
  );
}
