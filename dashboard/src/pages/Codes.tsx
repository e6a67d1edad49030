import { useMemo, useState } from "react";
import { errorText } from "../api";
import { CopyButton } from "../components/CopyButton";
import { Field } from "../components/Field";
import { Notice, type NoticeState } from "../components/Notice";
import { useLoad } from "../components/useLoad";
import { toCsv } from "../csv";
import { parseUsd, usd, when } from "../format";
import { useSession } from "../session";

type Batch = { id: string; codes: string[]; valueMicros: bigint; expiresAtMs: bigint; note: string };

/** Operators generate batches of redemption codes; the codes are shown once. */
export default function Codes() {
  const { api } = useSession();
  const [notice, setNotice] = useState<NoticeState>(null);
  const [count, setCount] = useState("10");
  const [value, setValue] = useState("");
  const [days, setDays] = useState("");
  const [note, setNote] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [batch, setBatch] = useState<Batch | null>(null);
  const [busy, setBusy] = useState(false);
  const batches = useLoad(() => api.console.listCodeBatches({}), [api]);

  const validate = () => {
    const e: Record<string, string> = {};
    const n = Number(count);
    if (!Number.isInteger(n) || n < 1 || n > 1000) e.count = "Between 1 and 1000 codes.";
    const v = parseUsd(value);
    if (typeof v === "string") e.value = v;
    else if (v <= 0n) e.value = "A code must be worth more than $0.";
    const d = days.trim() ? Number(days) : 0;
    if (!Number.isInteger(d) || d < 0) e.days = "Whole days, or empty for never.";
    setErrors(e);
    return Object.keys(e).length ? null : { n, v: v as bigint, d };
  };

  return (
    <>
      <Notice notice={notice} />
      {batch && <NewBatch batch={batch} onDismiss={() => setBatch(null)} />}
      <form
        aria-label="Generate redemption codes"
        noValidate
        onSubmit={async (e) => {
          e.preventDefault();
          const ok = validate();
          if (!ok) return;
          setBusy(true);
          try {
            const expiresAtMs = ok.d ? BigInt(Date.now() + ok.d * 86_400_000) : 0n;
            const r = await api.billing.generateCodes({ count: ok.n, valueMicros: ok.v, expiresAtMs, note });
            setBatch({ id: r.batchId, codes: r.codes, valueMicros: ok.v, expiresAtMs, note });
            setNotice({ kind: "ok", text: `Batch ${r.batchId}: ${r.codes.length} codes of ${usd(ok.v)}.` });
            await batches.reload();
          } catch (err) {
            setNotice({ kind: "error", text: errorText(err) });
          } finally {
            setBusy(false);
          }
        }}
      >
        <h2>Generate a batch</h2>
        <Field label="Number of codes" error={errors.count}>
          <input inputMode="numeric" value={count} onChange={(e) => setCount(e.target.value)} />
        </Field>
        <Field label="Value of each (USD)" error={errors.value}>
          <input inputMode="decimal" value={value} onChange={(e) => setValue(e.target.value)} />
        </Field>
        <Field label="Expires after (days, empty: never)" error={errors.days}>
          <input inputMode="numeric" value={days} onChange={(e) => setDays(e.target.value)} />
        </Field>
        <Field label="Note (campaign, customer)">
          <input value={note} onChange={(e) => setNote(e.target.value)} />
        </Field>
        <button type="submit" disabled={busy}>
          Generate codes
        </button>
      </form>
      <p className="hint">
        Only the codes' hashes are stored: a batch's codes are shown once, here, and cannot be shown again. Tenants redeem a
        code on their Balance page (or <code>tollgate codes redeem</code>).
      </p>
      {batches.error && <p role="alert" className="notice error">{batches.error}</p>}
      {!batches.data && !batches.error && <p role="status">Loading…</p>}
      {batches.data && (
        <div className="scroll">
          <table>
            <caption>Batches, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Created</th>
                <th scope="col">Batch</th>
                <th scope="col" className="num">Codes</th>
                <th scope="col" className="num">Redeemed</th>
                <th scope="col" className="num">Value each</th>
                <th scope="col">Expires</th>
                <th scope="col">Note</th>
              </tr>
            </thead>
            <tbody>
              {batches.data.batches.length === 0 && (
                <tr>
                  <td colSpan={7}>No batches yet.</td>
                </tr>
              )}
              {batches.data.batches.map((b) => (
                <tr key={b.batchId}>
                  <td>{when(b.createdAtMs)}</td>
                  <td>
                    <code>{b.batchId}</code>
                  </td>
                  <td className="num">{b.count}</td>
                  <td className="num">{b.redeemed}</td>
                  <td className="num">{usd(b.valueMicros)}</td>
                  <td>{b.expiresAtMs ? when(b.expiresAtMs) : "never"}</td>
                  <td>{b.note}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}

function NewBatch({ batch, onDismiss }: { batch: Batch; onDismiss: () => void }) {
  const text = batch.codes.join("\n");
  const csv = useMemo(
    () =>
      `data:text/csv;charset=utf-8,${encodeURIComponent(
        toCsv(["code", "value_micros", "expires_at_ms", "batch_id", "note"], batch.codes.map((c) => [c, batch.valueMicros, batch.expiresAtMs, batch.id, batch.note])),
      )}`,
    [batch],
  );
  return (
    <section className="secret" aria-label="New redemption codes">
      <p>
        {batch.codes.length} codes worth {usd(batch.valueMicros)} each{batch.expiresAtMs ? `, valid until ${when(batch.expiresAtMs)}` : ""}. Copy them now:
        they are shown only once.
      </p>
      <ul className="codes" data-testid="new-codes">
        {batch.codes.map((c) => (
          <li key={c}>
            <code>{c}</code>
          </li>
        ))}
      </ul>
      <p>
        <CopyButton text={text} label="Copy all codes" />{" "}
        <a href={csv} download={`tollgate-codes-${batch.id}.csv`}>
          Download CSV
        </a>
      </p>
      <button type="button" onClick={onDismiss}>
        I have saved them
      </button>
    </section>
  );
}
