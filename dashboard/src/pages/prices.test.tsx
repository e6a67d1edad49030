import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { type ReactNode } from "react";
import type { Api } from "../api";
import { SessionContext, type Session } from "../session";
import Prices, { checkPrice, perMtok, type PriceInput } from "./Prices";

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

const base: PriceInput = { model: "gpt-x", provider: "", input: "", cacheRead: "", cacheWrite: "", output: "", reasoning: "", maxOutput: "" };

describe("price form", () => {
  it("parses USD per million tokens into exact micro-dollars (no float drift)", () => {
    const c = checkPrice({ ...base, input: "0.1", cacheRead: "0.01", cacheWrite: "1.25", output: "0.3", reasoning: "", maxOutput: "8192" });
    expect(c.ok).toBe(true);
    if (!c.ok) return;
    // 0.1 + 0.2 style drift would show up here as 100000.00000000001 etc.
    expect(c.price.inputPerMtok).toBe(100_000n);
    expect(c.price.cacheReadPerMtok).toBe(10_000n);
    expect(c.price.cacheWritePerMtok).toBe(1_250_000n);
    expect(c.price.outputPerMtok).toBe(300_000n);
    expect(c.price.reasoningPerMtok).toBeUndefined();
    expect(c.price.maxOutputTokens).toBe(8192n);
    const r = checkPrice({ ...base, input: "2.5", output: "10", reasoning: "0" });
    expect(r.ok && r.price.reasoningPerMtok).toBe(0n);
  });

  it("puts a message on each bad field", () => {
    const c = checkPrice({ ...base, model: "", input: "", output: "1.0000001", cacheRead: "-1", maxOutput: "12.5" });
    expect(c.ok).toBe(false);
    if (c.ok) return;
    expect(c.errors.model).toBe("Pick a model.");
    expect(c.errors.input).toMatch(/USD per million tokens/);
    expect(c.errors.output).toMatch(/at most 6 decimals/);
    expect(c.errors.cacheRead).toMatch(/negative/);
    expect(c.errors.maxOutput).toMatch(/whole number/);
    expect(c.errors.cacheWrite).toBeUndefined();
  });

  it("shows micro-dollars per Mtok as money", () => {
    expect(perMtok(2_500_000n)).toBe("$2.50");
    expect(perMtok(150_000n)).toBe("$0.15");
    expect(perMtok(1n)).toBe("$0.000001");
    expect(perMtok(1_120_300n)).toBe("$1.1203");
    expect(perMtok(0n)).toBe("$0.00");
  });
});

describe("Prices page", () => {
  const models = [
    { id: "md_1", name: "gpt-x", providerName: "openai-main" },
    { id: "md_2", name: "gpt-x", providerName: "backup" },
  ];

  it("lets an operator set a per-target price and lists it as money", async () => {
    const prices: unknown[] = [];
    const setPrice = vi.fn(async (r: { model: string; provider: string; price: Record<string, bigint | undefined> }) => {
      const p = { tenantId: "tn_1", model: r.model, provider: r.provider, price: r.price, updatedAtMs: 1n };
      prices.push(p);
      return p;
    });
    const api = { billing: { listPrices: async () => ({ prices: [...prices] }), setPrice }, models: { listModels: async () => ({ models }) } };
    withSession(api, "owner", true, <Prices />);
    const form = await screen.findByRole("form", { name: "Set a price" });
    fireEvent.change(within(form).getByLabelText("Model"), { target: { value: "gpt-x" } });
    fireEvent.change(within(form).getByLabelText("Provider target"), { target: { value: "backup" } });
    fireEvent.change(within(form).getByLabelText("Input (USD per million tokens)"), { target: { value: "abc" } });
    fireEvent.click(within(form).getByRole("button", { name: "Save price" }));
    expect(await within(form).findByText(/Enter a price in USD per million tokens, like 25/)).toBeTruthy();
    expect(within(form).getByLabelText("Input (USD per million tokens)").getAttribute("aria-invalid")).toBe("true");
    expect(setPrice).not.toHaveBeenCalled();
    fireEvent.change(within(form).getByLabelText("Input (USD per million tokens)"), { target: { value: "0.15" } });
    fireEvent.change(within(form).getByLabelText("Output (USD per million tokens)"), { target: { value: "0.60" } });
    fireEvent.click(within(form).getByRole("button", { name: "Save price" }));
    await waitFor(() => expect(setPrice).toHaveBeenCalledTimes(1));
    const sent = setPrice.mock.calls[0][0];
    expect(sent.model).toBe("gpt-x");
    expect(sent.provider).toBe("backup");
    expect(sent.price.inputPerMtok).toBe(150_000n);
    expect(sent.price.outputPerMtok).toBe(600_000n);
    expect(await screen.findByText("Price of gpt-x via backup saved.")).toBeTruthy();
    const row = (await screen.findByText("backup", { selector: "td" })).closest("tr") as HTMLElement;
    expect(within(row).getByText("$0.15")).toBeTruthy();
    expect(within(row).getByText("$0.60")).toBeTruthy();
    expect(within(row).getByText("as output")).toBeTruthy();
  });

  it("shows tenant users the prices without a form", async () => {
    const api = {
      billing: {
        listPrices: async () => ({
          prices: [{ tenantId: "tn_1", model: "gpt-x", provider: "", updatedAtMs: 1n, price: { inputPerMtok: 2_000_000n, cacheReadPerMtok: 0n, cacheWritePerMtok: 0n, outputPerMtok: 8_000_000n, perRequestMicros: 0n, maxOutputTokens: 0n } }],
        }),
      },
      models: { listModels: async () => ({ models }) },
    };
    withSession(api, "owner", false, <Prices />);
    expect(await screen.findByText("every target")).toBeTruthy();
    expect(screen.getByText("$8.00")).toBeTruthy();
    expect(screen.queryByRole("form", { name: "Set a price" })).toBeNull();
    expect(screen.getByText("Prices are set by the operator of this installation.")).toBeTruthy();
  });
});
