import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { type ReactNode } from "react";
import type { Api } from "../api";
import { SessionContext, type Session } from "../session";
import { parseUsd } from "../format";
import Billing from "./Billing";
import Budgets, { checkBudget } from "./Budgets";
import Codes from "./Codes";
import { checkGuardrail } from "./Guardrails";
import { dailyPoints, tokenParts, windowStart } from "./Usage";
import type { UsageBucket } from "../gen/tollgate/admin/v1/usage_query_pb";

afterEach(cleanup);

function withSession(api: Partial<Record<keyof Api, unknown>>, role: string, isOperator: boolean, node: ReactNode) {
  const session = {
    api: api as unknown as Api,
    principal: { kind: isOperator ? "operator" : "user", tenantName: isOperator ? "" : "acme", role } as Session["principal"],
    tenant: "acme",
    role,
    isOperator,
    reloadTenants: async () => {},
  } satisfies Session;
  return render(<SessionContext.Provider value={session}>{node}</SessionContext.Provider>);
}

const account = (balance: bigint) => ({
  tenantId: "tn_1",
  balanceMicros: balance,
  creditLimitMicros: 0n,
  priceMultiplierBps: 10_000,
  frozen: false,
  frozenReason: "",
  leasedMicros: 0n,
  spendableMicros: balance,
});

const entry = (i: number, ms: number) => ({
  id: `le_${String(i).padStart(3, "0")}`,
  tenantId: "tn_1",
  kind: "topup",
  amountMicros: 1_000_000n,
  balanceAfterMicros: BigInt(i) * 1_000_000n,
  reference: `ref-${i}`,
  note: "",
  createdAtMs: BigInt(ms),
});

describe("money input", () => {
  it("parses dollars into exact micro-dollars and explains bad input", () => {
    expect(parseUsd("25")).toBe(25_000_000n);
    expect(parseUsd("$1,000.5")).toBe(1_000_500_000n);
    expect(parseUsd("0.000001")).toBe(1n);
    expect(parseUsd(".5")).toBe(500_000n);
    expect(parseUsd("-2.25", { allowNegative: true })).toBe(-2_250_000n);
    expect(parseUsd("-2")).toBe("The amount must not be negative.");
    expect(parseUsd("1.0000001")).toMatch(/at most 6 decimals/);
    expect(parseUsd("ten")).toMatch(/Enter an amount/);
    expect(parseUsd("")).toMatch(/Enter an amount/);
  });
});

describe("Billing page", () => {
  it("tops up with an exact amount and an idempotency key, then shows the new balance", async () => {
    let balance = 0n;
    const addLedgerEntry = vi.fn(async (r: { amountMicros: bigint }) => {
      balance += r.amountMicros;
      return { ...entry(1, 1), amountMicros: r.amountMicros, balanceAfterMicros: balance };
    });
    const api = {
      billing: {
        getAccount: async () => account(balance),
        listLedger: async () => ({ entries: [], balanceMicros: balance, totalsByKind: {} }),
        addLedgerEntry,
      },
    };
    withSession(api, "owner", true, <Billing />);
    const form = await screen.findByRole("form", { name: "Add to the balance" });
    fireEvent.change(within(form).getByLabelText("Amount (USD)"), { target: { value: "12.50x" } });
    fireEvent.submit(form);
    expect((await within(form).findByRole("alert")).textContent).toMatch(/Enter an amount in dollars/);
    expect(within(form).getByLabelText("Amount (USD)").getAttribute("aria-invalid")).toBe("true");
    expect(addLedgerEntry).not.toHaveBeenCalled();
    fireEvent.change(within(form).getByLabelText("Amount (USD)"), { target: { value: "12.50" } });
    fireEvent.submit(form);
    await screen.findByText("Added $12.500000 (topup); balance $12.500000.");
    const req = addLedgerEntry.mock.calls[0][0] as unknown as { tenant: string; kind: string; amountMicros: bigint; idempotencyKey: string };
    expect([req.tenant, req.kind, req.amountMicros]).toEqual(["acme", "topup", 12_500_000n]);
    expect(req.idempotencyKey).toMatch(/^[0-9a-f-]{36}$/);
    await waitFor(() => expect(screen.getByTestId("balance").textContent).toBe("$12.500000"));
  });

  it("shows tenant users the balance and the redeem form, never the operator's money forms", async () => {
    const redeemCode = vi.fn(async () => ({ ...entry(1, 1), kind: "redemption", amountMicros: 5_000_000n, balanceAfterMicros: 5_000_000n }));
    const api = {
      billing: {
        getAccount: async () => account(0n),
        listLedger: async () => ({ entries: [], balanceMicros: 0n, totalsByKind: {} }),
        redeemCode,
      },
    };
    withSession(api, "admin", false, <Billing />);
    const form = await screen.findByRole("form", { name: "Redeem a code" });
    expect(screen.queryByRole("form", { name: "Add to the balance" })).toBeNull();
    expect(screen.queryByRole("button", { name: /Freeze/ })).toBeNull();
    fireEvent.change(within(form).getByLabelText("Code"), { target: { value: "  tgc_ABC  " } });
    fireEvent.submit(form);
    await screen.findByText("Code redeemed: $5.000000 added; balance $5.000000.");
    expect(redeemCode).toHaveBeenCalledWith({ tenant: "acme", code: "tgc_ABC" });
    expect(await screen.findByText("No entries yet.")).toBeTruthy();
  });

  it("pages through the statement without skipping or repeating entries that share a millisecond", async () => {
    // 30 entries, newest first; 4 of them (2 on each page) at the boundary's millisecond.
    const all = Array.from({ length: 30 }, (_, i) => entry(30 - i, i < 23 ? 2000 - i : i <= 26 ? 1000 : 900 - i));
    const listLedger = vi.fn(async ({ untilMs, limit }: { untilMs?: bigint; limit: number }) => {
      const rows = all.filter((e) => !untilMs || e.createdAtMs < untilMs).slice(0, limit);
      return { entries: rows, balanceMicros: 30_000_000n, totalsByKind: {} };
    });
    withSession({ billing: { getAccount: async () => account(30_000_000n), listLedger } }, "viewer", false, <Billing />);
    await screen.findByText("Showing 25 entries. Balance now $30.000000.");
    fireEvent.click(screen.getByRole("button", { name: "Older entries" }));
    await screen.findByText("Showing 30 entries. Balance now $30.000000.");
    const refs = screen.getAllByText(/^ref-\d+$/).map((c) => c.textContent);
    expect(refs).toEqual(all.map((e) => e.reference));
    expect(screen.queryByRole("button", { name: "Older entries" })).toBeNull();
    expect(listLedger.mock.calls[1][0]).toMatchObject({ untilMs: 1001n, limit: 2 + 25 + 1 });
  });
});

describe("Budgets", () => {
  it("validates the form with a message per field", () => {
    const bad = checkBudget({ period: "month", amount: "0", soft: "5", offset: "1000", webhook: "ftp://x" });
    expect(bad.ok).toBe(false);
    if (!bad.ok) {
      expect(bad.errors.amount).toBe("The hard limit must be more than $0.");
      expect(bad.errors.soft).toBe("The alert threshold must not exceed the hard limit.");
      expect(bad.errors.offset).toMatch(/between -840 and 840/);
      expect(bad.errors.webhook).toMatch(/http/);
    }
    expect(checkBudget({ period: "week", amount: "50", soft: "40", offset: "-300", webhook: "" })).toEqual({
      ok: true,
      amountMicros: 50_000_000n,
      softMicros: 40_000_000n,
      utcOffsetMinutes: -300,
      webhookUrl: "",
    });
  });

  it("sets a budget and lists it with what was spent", async () => {
    const budgets: { id: string; period: string; amountMicros: bigint; softMicros: bigint; spentMicros: bigint; utcOffsetMinutes: number; webhookUrl: string; keyId: string }[] = [];
    const setBudget = vi.fn(async (r: { period: string; amountMicros: bigint; softMicros: bigint; key: string }) => {
      const b = { id: `bg_${budgets.length}`, period: r.period, amountMicros: r.amountMicros, softMicros: r.softMicros, spentMicros: 1_000_000n, utcOffsetMinutes: 0, webhookUrl: "", keyId: r.key };
      budgets.push(b);
      return b;
    });
    const deleteBudget = vi.fn(async () => ({}));
    const api = {
      billing: { listBudgets: async () => ({ budgets: [...budgets] }), listBudgetAlerts: async () => ({ alerts: [{ id: "ba_1", period: "day", keyId: "ck_1", periodStartMs: 1n, thresholdMicros: 1n, spentMicros: 2n, createdAtMs: 1n, deliveredAtMs: 0n }] }), setBudget, deleteBudget },
      keys: { listKeys: async () => ({ keys: [{ id: "ck_1", name: "ci-bot", revokedAtMs: 0n }] }) },
    };
    withSession(api, "admin", false, <Budgets />);
    const form = await screen.findByRole("form", { name: "Set a budget" });
    fireEvent.change(within(form).getByLabelText(/Hard limit/), { target: { value: "abc" } });
    fireEvent.submit(form);
    expect((await within(form).findByText(/Enter an amount/)).className).toBe("field-error");
    expect(setBudget).not.toHaveBeenCalled();
    fireEvent.change(within(form).getByLabelText(/Hard limit/), { target: { value: "10" } });
    fireEvent.change(within(form).getByLabelText(/Alert threshold/), { target: { value: "8" } });
    fireEvent.submit(form);
    await screen.findByText("Budget of tenant set: $10.000000 per month, alert at $8.000000.");
    expect(setBudget.mock.calls[0][0].key).toBe("");
    const row = await screen.findByRole("row", { name: /tenant month/ });
    expect(row.textContent).toContain("$1.000000 (10.0%)");
    // A key's own budget: sent with the key's id, listed with the key's name.
    fireEvent.change(within(form).getByLabelText("Applies to"), { target: { value: "ck_1" } });
    fireEvent.change(within(form).getByLabelText(/Period/), { target: { value: "day" } });
    fireEvent.change(within(form).getByLabelText(/Hard limit/), { target: { value: "2.5" } });
    fireEvent.change(within(form).getByLabelText(/Alert threshold/), { target: { value: "" } });
    fireEvent.submit(form);
    await screen.findByText("Budget of key ci-bot set: $2.500000 per day.");
    expect(setBudget.mock.calls[1][0]).toMatchObject({ key: "ck_1", period: "day", amountMicros: 2_500_000n });
    const keyRow = await within(screen.getByRole("table", { name: /Budgets of/ })).findByRole("row", { name: /key ci-bot day/ });
    expect(keyRow.textContent).toContain("$2.500000");
    // The alert names the key too.
    expect(within(screen.getByRole("table", { name: /alerts/ })).getByRole("row", { name: /key ci-bot day .*not delivered/ })).toBeTruthy();
    fireEvent.click(within(keyRow).getByRole("button", { name: "Delete day budget of key ci-bot" }));
    fireEvent.click(within(keyRow).getByRole("button", { name: "Really delete the day budget of key ci-bot" }));
    await waitFor(() => expect(deleteBudget).toHaveBeenCalledWith({ tenant: "acme", period: "day", key: "ck_1" }));
  });
});

describe("Redemption codes", () => {
  it("shows a generated batch once, with copy", async () => {
    const generateCodes = vi.fn(async () => ({ batchId: "cb_1", codes: ["tgc_AAA", "tgc_BBB"] }));
    let made = false;
    const listCodeBatches = async () => ({
      batches: made ? [{ batchId: "cb_1", count: 2, redeemed: 0, valueMicros: 5_000_000n, expiresAtMs: 0n, note: "", createdAtMs: 1n }] : [],
    });
    generateCodes.mockImplementation(async () => {
      made = true;
      return { batchId: "cb_1", codes: ["tgc_AAA", "tgc_BBB"] };
    });
    withSession({ billing: { generateCodes }, console: { listCodeBatches } }, "owner", true, <Codes />);
    await screen.findByText("No batches yet.");
    const form = screen.getByRole("form", { name: "Generate redemption codes" });
    fireEvent.change(within(form).getByLabelText(/Number of codes/), { target: { value: "2" } });
    fireEvent.change(within(form).getByLabelText(/Value of each/), { target: { value: "5" } });
    fireEvent.submit(form);
    const list = await screen.findByTestId("new-codes");
    expect(list.textContent).toBe("tgc_AAAtgc_BBB");
    expect(generateCodes).toHaveBeenCalledWith({ count: 2, valueMicros: 5_000_000n, expiresAtMs: 0n, note: "" });
    expect(screen.getByRole("button", { name: "Copy all codes" })).toBeTruthy();
    const row = await screen.findByRole("row", { name: /cb_1/ });
    expect(row.textContent).not.toContain("tgc_");
    fireEvent.click(screen.getByRole("button", { name: "I have saved them" }));
    expect(screen.queryByTestId("new-codes")).toBeNull();
  });
});

describe("Guardrail form checks", () => {
  it("explains bad JSON and impossible actions before calling the API", () => {
    expect(checkGuardrail({ name: "ok", kind: "keyword", action: "block", settings: '{"words": ["x"]}' })).toEqual({});
    const e = checkGuardrail({ name: "two words", kind: "size", action: "redact", settings: "{words" });
    expect(e.name).toBe("A name without spaces.");
    expect(e.action).toBe("A size guardrail cannot redact; use block or log.");
    expect(e.settings).toMatch(/^Not valid JSON/);
    expect(checkGuardrail({ name: "a", kind: "pii", action: "log", settings: "[]" }).settings).toMatch(/JSON object/);
  });
});

describe("Usage series", () => {
  const bucket = (day: number, o: Partial<Record<keyof UsageBucket, bigint>>) =>
    ({ bucketStartMs: BigInt(day), calls: 0n, errors: 0n, promptTokens: 0n, completionTokens: 0n, cacheReadTokens: 0n, cacheWriteTokens: 0n, reasoningTokens: 0n, costMicros: 0n, ...o }) as unknown as UsageBucket;

  it("splits tokens into disjoint buckets and fills days without calls", () => {
    expect(tokenParts(bucket(0, { promptTokens: 100n, cacheReadTokens: 30n, cacheWriteTokens: 10n, completionTokens: 50n, reasoningTokens: 20n }))).toEqual([60, 30, 10, 30, 20]);
    const since = windowStart(3, Date.UTC(2026, 10, 23, 15));
    expect(since).toBe(Date.UTC(2026, 10, 21));
    const b = [bucket(since + 2 * 86_400_000, { calls: 4n, errors: 1n, costMicros: 1500n })];
    expect(dailyPoints(b, since, 3, "calls")).toEqual([
      { label: "11-21", values: [0, 0] },
      { label: "11-22", values: [0, 0] },
      { label: "11-23", values: [3, 1] },
    ]);
    expect(dailyPoints(b, since, 3, "errors")[2].values).toEqual([25]);
    expect(dailyPoints(b, since, 3, "cost")[2].values).toEqual([1500]);
  });
});
