import { useState } from "react";
import { errorText } from "../api";
import { ConfirmButton } from "../components/ConfirmButton";
import { Notice, type NoticeState } from "../components/Notice";
import { useLoad } from "../components/useLoad";
import { useQueryState } from "../components/useQueryState";
import { bps, parseUsd, usd, when } from "../format";
import type { Account, LedgerEntry } from "../gen/tollgate/admin/v1/billing_pb";
import { can, useSession } from "../session";

const PAGE = 25;
const KINDS = ["topup", "credit", "refund", "adjustment", "redemption", "usage"];

/** Balance, top-ups (operators), redeeming a code (tenant admins), the statement. */
export default function Billing() {
  const { api, tenant, role, isOperator } = useSession();
  const [notice, setNotice] = useState<NoticeState>(null);
  const account = useLoad(() => api.billing.getAccount({ tenant }), [api, tenant]);
  const [ledgerRound, setLedgerRound] = useState(0);
  const changed = async (text: string) => {
    setNotice({ kind: "ok", text });
    await account.reload();
    setLedgerRound((n) => n + 1);
  };
  const failed = (e: unknown) => setNotice({ kind: "error", text: errorText(e) });
  const a = account.data;
  return (
    <>
      <Notice notice={notice} />
      {account.error && <p role="alert" className="notice error">{account.error}</p>}
      {!a && !account.error && <p role="status">Loading…</p>}
      {a && <AccountCard account={a} />}
      {a && isOperator && can(role, "write") && (
        <>
          <TopUpForm onDone={changed} onError={failed} />
          <AccountForm key={`${a.priceMultiplierBps}:${a.creditLimitMicros}`} account={a} onDone={changed} onError={failed} />
          <FreezeForm account={a} onDone={changed} onError={failed} />
        </>
      )}
      {a && can(role, "write") && <RedeemForm onDone={changed} onError={failed} />}
      <Statement key={`${tenant}:${ledgerRound}`} />
    </>
  );
}

function AccountCard({ account: a }: { account: Account }) {
  return (
    <section className="card" aria-label="Account">
      <h2>Account</h2>
      <dl>
        <dt>Balance</dt>
        <dd data-testid="balance">{usd(a.balanceMicros)}</dd>
        <dt>Spendable now</dt>
        <dd>{usd(a.spendableMicros)}</dd>
        <dt>Granted to data planes</dt>
        <dd>{usd(a.leasedMicros)}</dd>
        <dt>Credit limit</dt>
        <dd>{a.creditLimitMicros ? usd(a.creditLimitMicros) : "none (prepaid)"}</dd>
        <dt>Price multiplier</dt>
        <dd>{bps(a.priceMultiplierBps || 10_000)}</dd>
        <dt>State</dt>
        <dd>{a.frozen ? <span className="warn">frozen{a.frozenReason ? `: ${a.frozenReason}` : ""} — every call is refused (403)</span> : "active"}</dd>
      </dl>
    </section>
  );
}

type Done = (text: string) => Promise<void>;
type Fail = (e: unknown) => void;

function TopUpForm({ onDone, onError }: { onDone: Done; onError: Fail }) {
  const { api, tenant } = useSession();
  const [kind, setKind] = useState("topup");
  const [amount, setAmount] = useState("");
  const [reference, setReference] = useState("");
  const [note, setNote] = useState("");
  const [invalid, setInvalid] = useState<string | null>(null);
  // One idempotency key per intended entry: a double submit adds it once.
  const [idem, setIdem] = useState(() => crypto.randomUUID());
  const [busy, setBusy] = useState(false);
  return (
    <form
      aria-label="Add to the balance"
      noValidate
      onSubmit={async (e) => {
        e.preventDefault();
        const micros = parseUsd(amount, { allowNegative: kind === "adjustment" });
        if (typeof micros === "string" || micros === 0n) {
          setInvalid(typeof micros === "string" ? micros : "The amount must not be zero.");
          return;
        }
        setInvalid(null);
        setBusy(true);
        try {
          const entry = await api.billing.addLedgerEntry({ tenant, kind, amountMicros: micros, idempotencyKey: idem, reference, note });
          setIdem(crypto.randomUUID());
          setAmount("");
          setReference("");
          setNote("");
          await onDone(`Added ${usd(entry.amountMicros)} (${entry.kind}); balance ${usd(entry.balanceAfterMicros)}.`);
        } catch (err) {
          onError(err);
        } finally {
          setBusy(false);
        }
      }}
    >
      <h2>Top up or adjust (operator)</h2>
      <label>
        Kind
        <select aria-label="Kind" value={kind} onChange={(e) => setKind(e.target.value)}>
          <option value="topup">top-up</option>
          <option value="credit">credit</option>
          <option value="refund">refund</option>
          <option value="adjustment">adjustment (may be negative)</option>
        </select>
      </label>
      <label>
        Amount (USD)
        <input
          aria-label="Amount (USD)"
          inputMode="decimal"
          required
          value={amount}
          aria-invalid={invalid ? true : undefined}
          aria-describedby={invalid ? "topup-invalid" : undefined}
          onChange={(e) => setAmount(e.target.value)}
        />
      </label>
      <label>
        Reference (invoice, payment id)
        <input value={reference} onChange={(e) => setReference(e.target.value)} />
      </label>
      <label>
        Note
        <input value={note} onChange={(e) => setNote(e.target.value)} />
      </label>
      <button type="submit" disabled={busy}>
        Add entry
      </button>
      {invalid && (
        <p id="topup-invalid" className="field-error" role="alert">
          {invalid}
        </p>
      )}
    </form>
  );
}

function AccountForm({ account, onDone, onError }: { account: Account; onDone: Done; onError: Fail }) {
  const { api, tenant } = useSession();
  const [multiplier, setMultiplier] = useState(String(account.priceMultiplierBps || 10_000));
  const [credit, setCredit] = useState(account.creditLimitMicros ? usd(account.creditLimitMicros).replace("$", "") : "0");
  const [invalid, setInvalid] = useState<string | null>(null);
  return (
    <form
      aria-label="Price multiplier and credit limit"
      noValidate
      onSubmit={async (e) => {
        e.preventDefault();
        const m = Number(multiplier);
        const c = parseUsd(credit);
        if (!Number.isInteger(m) || m < 1 || m > 1_000_000) {
          setInvalid("The multiplier is whole basis points: 10000 = list price, 8000 = 20% discount.");
          return;
        }
        if (typeof c === "string") {
          setInvalid(`Credit limit: ${c}`);
          return;
        }
        setInvalid(null);
        try {
          const a = await api.billing.setAccount({ tenant, priceMultiplierBps: m, creditLimitMicros: c });
          await onDone(`Price multiplier ${bps(a.priceMultiplierBps)}, credit limit ${usd(a.creditLimitMicros)}.`);
        } catch (err) {
          onError(err);
        }
      }}
    >
      <h2>Pricing (operator)</h2>
      <label>
        Price multiplier (basis points; 10000 = list price)
        <input inputMode="numeric" value={multiplier} aria-invalid={invalid ? true : undefined} onChange={(e) => setMultiplier(e.target.value)} />
      </label>
      <label>
        Credit limit (USD below zero; 0 = prepaid)
        <input inputMode="decimal" value={credit} onChange={(e) => setCredit(e.target.value)} />
      </label>
      <button type="submit">Save pricing</button>
      {invalid && (
        <p className="field-error" role="alert">
          {invalid}
        </p>
      )}
    </form>
  );
}

function FreezeForm({ account, onDone, onError }: { account: Account; onDone: Done; onError: Fail }) {
  const { api, tenant } = useSession();
  const [reason, setReason] = useState("");
  if (account.frozen) {
    return (
      <div className="toolbar">
        <ConfirmButton
          label={`Unfreeze ${tenant}`}
          confirmLabel={`Really unfreeze ${tenant}`}
          onConfirm={async () => {
            try {
              await api.billing.unfreezeTenant({ tenant });
              await onDone(`Tenant ${tenant} unfrozen; data planes accept its calls with the next config version.`);
            } catch (e) {
              onError(e);
            }
          }}
        />
      </div>
    );
  }
  return (
    <form aria-label="Freeze the tenant" onSubmit={(e) => e.preventDefault()}>
      <h2>Freeze (operator)</h2>
      <label>
        Reason (shown to operators)
        <input value={reason} onChange={(e) => setReason(e.target.value)} />
      </label>
      <ConfirmButton
        label={`Freeze ${tenant}`}
        confirmLabel={`Really freeze ${tenant}: refuse all its calls`}
        onConfirm={async () => {
          try {
            await api.billing.freezeTenant({ tenant, reason });
            setReason("");
            await onDone(`Tenant ${tenant} frozen; its calls are refused with 403 tenant_frozen.`);
          } catch (e) {
            onError(e);
          }
        }}
      />
    </form>
  );
}

function RedeemForm({ onDone, onError }: { onDone: Done; onError: Fail }) {
  const { api, tenant } = useSession();
  const [code, setCode] = useState("");
  return (
    <form
      aria-label="Redeem a code"
      onSubmit={async (e) => {
        e.preventDefault();
        try {
          const entry = await api.billing.redeemCode({ tenant, code: code.trim() });
          setCode("");
          await onDone(`Code redeemed: ${usd(entry.amountMicros)} added; balance ${usd(entry.balanceAfterMicros)}.`);
        } catch (err) {
          onError(err);
        }
      }}
    >
      <h2>Redeem a code</h2>
      <label>
        Code
        <input required autoComplete="off" placeholder="tgc_…" pattern="\s*[tT][gG][cC]_\S+\s*" title="A code starts with tgc_" value={code} onChange={(e) => setCode(e.target.value)} />
      </label>
      <button type="submit">Redeem</button>
    </form>
  );
}

/**
 * The statement, newest first, a page at a time. ListLedger pages by time:
 * the next page asks for entries up to and including the oldest shown
 * millisecond and skips those already shown at that millisecond (the API
 * orders by time, then id, descending), so nothing is missed or repeated.
 */
function Statement() {
  const { api, tenant } = useSession();
  const [kind, setKind] = useQueryState("kind");
  const [entries, setEntries] = useState<LedgerEntry[]>([]);
  const [more, setMore] = useState(false);
  const [busy, setBusy] = useState(false);
  const [pageError, setPageError] = useState<string | null>(null);
  const first = useLoad(async () => {
    const r = await api.billing.listLedger({ tenant, kind, limit: PAGE + 1 });
    setEntries(r.entries.slice(0, PAGE));
    setMore(r.entries.length > PAGE);
    return r;
  }, [api, tenant, kind]);

  const older = async () => {
    const last = entries[entries.length - 1];
    if (!last) return;
    const seen = entries.filter((e) => e.createdAtMs === last.createdAtMs).length;
    setBusy(true);
    try {
      const r = await api.billing.listLedger({ tenant, kind, untilMs: last.createdAtMs + 1n, limit: seen + PAGE + 1 });
      const fresh = r.entries.slice(seen);
      setEntries((prev) => [...prev, ...fresh.slice(0, PAGE)]);
      setMore(fresh.length > PAGE);
      setPageError(null);
    } catch (e) {
      setPageError(errorText(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-label="Statement">
      <h2>Statement</h2>
      <div className="toolbar">
        <label>
          Kind
          <select aria-label="Kind" value={kind} onChange={(e) => setKind(e.target.value)}>
            <option value="">all</option>
            {KINDS.map((k) => (
              <option key={k}>{k}</option>
            ))}
          </select>
        </label>
      </div>
      {(first.error || pageError) && <p role="alert" className="notice error">{first.error || pageError}</p>}
      {!first.data && !first.error && <p role="status">Loading…</p>}
      {first.data && (
        <div className="scroll">
          <table>
            <caption>Ledger of {tenant}, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Kind</th>
                <th scope="col" className="num">Amount</th>
                <th scope="col" className="num">Balance after</th>
                <th scope="col">Reference</th>
                <th scope="col">Note</th>
              </tr>
            </thead>
            <tbody>
              {entries.length === 0 && (
                <tr>
                  <td colSpan={6}>No entries{kind ? ` of kind ${kind}` : ""} yet.</td>
                </tr>
              )}
              {entries.map((e) => (
                <tr key={e.id}>
                  <td>{when(e.createdAtMs)}</td>
                  <td>{e.kind}</td>
                  <td className="num">{usd(e.amountMicros)}</td>
                  <td className="num">{usd(e.balanceAfterMicros)}</td>
                  <td>{e.reference}</td>
                  <td>{e.note}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {more && (
        <button type="button" disabled={busy} onClick={() => void older()}>
          Older entries
        </button>
      )}
      {first.data && <p className="hint">Showing {entries.length} entries. Balance now {usd(first.data.balanceMicros)}.</p>}
    </section>
  );
}
