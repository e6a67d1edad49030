import { Fragment } from "react";
import { useLoad } from "../components/useLoad";
import { num, usd } from "../format";
import { useSession } from "../session";

function startOfDayUtc(): number {
  const d = new Date();
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
}

function startOfMonthUtc(): number {
  const d = new Date();
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

type Totals = { calls: bigint; errors: bigint; tokens: bigint; cost: bigint };

export default function Overview() {
  const { api, tenant } = useSession();
  const { data, error } = useLoad(async () => {
    const [today, month, account, budgets] = await Promise.all([
      api.usage.getUsage({ tenant, sinceMs: BigInt(startOfDayUtc()) }),
      api.usage.getUsage({ tenant, sinceMs: BigInt(startOfMonthUtc()) }),
      api.billing.getAccount({ tenant }),
      api.billing.listBudgets({ tenant }),
    ]);
    const sum = (rows: typeof today.rows): Totals =>
      rows.reduce(
        (a, r) => ({
          calls: a.calls + r.calls,
          errors: a.errors + r.errors,
          tokens: a.tokens + r.totalTokens,
          cost: a.cost + r.costMicros,
        }),
        { calls: 0n, errors: 0n, tokens: 0n, cost: 0n },
      );
    const top = [...month.rows].sort((a, b) => Number(b.calls - a.calls)).slice(0, 5);
    return { today: sum(today.rows), month: sum(month.rows), top, account, budgets: budgets.budgets };
  }, [api, tenant]);

  if (error) return <p role="alert" className="notice error">{error}</p>;
  if (!data) return <p role="status">Loading…</p>;
  const rate = (t: Totals) => (t.calls ? `${((Number(t.errors) / Number(t.calls)) * 100).toFixed(1)}%` : "—");
  return (
    <>
      <div className="cards">
        <section className="card" aria-label="Balance">
          <h2>Balance</h2>
          <dl>
            <dt>Balance</dt>
            <dd data-testid="overview-balance">{usd(data.account.balanceMicros)}</dd>
            <dt>Spendable</dt>
            <dd>{usd(data.account.spendableMicros)}</dd>
            {data.budgets.map((b) => (
              <Fragment key={b.id}>
                <dt>Budget ({b.period})</dt>
                <dd>
                  {usd(b.spentMicros)} of {usd(b.amountMicros)}
                </dd>
              </Fragment>
            ))}
            {data.account.frozen && (
              <>
                <dt>State</dt>
                <dd className="warn">frozen</dd>
              </>
            )}
          </dl>
        </section>
        {(
          [
            ["Today (UTC)", data.today],
            ["This month", data.month],
          ] as const
        ).map(([label, t]) => (
          <section key={label} className="card" aria-label={label}>
            <h2>{label}</h2>
            <dl>
              <dt>Spend</dt>
              <dd>{usd(t.cost)}</dd>
              <dt>Calls</dt>
              <dd>{num(t.calls)}</dd>
              <dt>Error rate</dt>
              <dd>{rate(t)}</dd>
              <dt>Tokens</dt>
              <dd>{num(t.tokens)}</dd>
            </dl>
          </section>
        ))}
      </div>
      <table>
        <caption>Top models this month</caption>
        <thead>
          <tr>
            <th scope="col">Model</th>
            <th scope="col">Calls</th>
            <th scope="col">Tokens</th>
            <th scope="col">Cost</th>
          </tr>
        </thead>
        <tbody>
          {data.top.length === 0 && (
            <tr>
              <td colSpan={4}>No calls yet this month.</td>
            </tr>
          )}
          {data.top.map((r) => (
            <tr key={r.model}>
              <td>{r.model}</td>
              <td>{num(r.calls)}</td>
              <td>{num(r.totalTokens)}</td>
              <td>{usd(r.costMicros)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
