import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, fireEvent, render, screen, within } from "@testing-library/react";
import { type ReactNode } from "react";
import { ConnectError, Code } from "@connectrpc/connect";
import type { Api } from "../api";
import { SessionContext, type Session } from "../session";
import Guardrails from "./Guardrails";
import Keys from "./Keys";

afterEach(cleanup);

function withSession(api: Partial<Record<keyof Api, unknown>>, node: ReactNode) {
  const session = {
    api: api as unknown as Api,
    principal: { kind: "user", tenantName: "acme", role: "admin" } as Session["principal"],
    tenant: "acme",
    role: "admin",
    isOperator: false,
    reloadTenants: async () => {},
  } satisfies Session;
  return render(<SessionContext.Provider value={session}>{node}</SessionContext.Provider>);
}

describe("Replacing a guardrail", () => {
  it("attaches the new one everywhere before deleting the old one", async () => {
    const calls: string[] = [];
    const old = {
      id: "gr_1",
      name: "no-zeus",
      kind: "keyword",
      action: "block",
      direction: "input",
      settings: '{"words": ["zeus"]}',
      attachments: [
        { scope: "tenant", targetId: "tn_1", targetName: "acme" },
        { scope: "key", targetId: "ck_1", targetName: "backend" },
      ],
    };
    const api = {
      guardrails: {
        listGuardrails: async () => ({ guardrails: [old] }),
        createGuardrail: vi.fn(async (r: { name: string }) => (calls.push(`create ${r.name}`), { ...old, id: "gr_2", name: r.name, attachments: [] })),
        attachGuardrail: vi.fn(async (r: { guardrail: string; scope: string; target: string }) => (calls.push(`attach ${r.guardrail} ${r.scope} ${r.target}`), old)),
        deleteGuardrail: vi.fn(async (r: { guardrail: string }) => (calls.push(`delete ${r.guardrail}`), {})),
      },
      keys: { listKeys: async () => ({ keys: [] }) },
      models: { listModels: async () => ({ models: [] }) },
    };
    withSession(api, <Guardrails />);
    fireEvent.click(await screen.findByRole("button", { name: "Edit no-zeus" }));
    const form = screen.getByRole("form", { name: "Replace no-zeus" });
    expect((within(form).getByLabelText("Name") as HTMLInputElement).value).toBe("no-zeus-v2");
    fireEvent.change(within(form).getByLabelText("Settings (JSON)"), { target: { value: '{"words": ["zeus", "hera"]}' } });
    fireEvent.submit(form);
    await screen.findByText("Guardrail no-zeus replaced by no-zeus-v2 (2 attachments moved).");
    expect(calls).toEqual(["create no-zeus-v2", "attach gr_2 tenant ", "attach gr_2 key ck_1", "delete gr_1"]);
  });
});

describe("A key with a model allowlist", () => {
  const base = () => ({
    providers: { listProviders: async () => ({ providers: [] }) },
    models: { listModels: async () => ({ models: [{ id: "md_1", name: "gpt-4o-mini" }, { id: "md_2", name: "gpt-4o" }] }) },
    billing: { listBudgets: async () => ({ budgets: [] }) },
  });

  it("is shown only after its model guardrail is attached", async () => {
    const calls: string[] = [];
    const api = {
      ...base(),
      keys: {
        listKeys: async () => ({ keys: [] }),
        createKey: vi.fn(async (r: { name: string }) => (calls.push("createKey"), { key: { id: "ck_9", name: r.name }, secret: "tg-secret-9" })),
        revokeKey: vi.fn(),
      },
      guardrails: {
        listGuardrails: async () => ({ guardrails: [] }),
        createGuardrail: vi.fn(async (r: { name: string; kind: string; settings: string }) => (calls.push(`guard ${r.name} ${r.kind} ${r.settings}`), { id: "gr_9" })),
        attachGuardrail: vi.fn(async (r: { guardrail: string; scope: string; target: string }) => (calls.push(`attach ${r.guardrail} ${r.scope} ${r.target}`), {})),
      },
    };
    withSession(api, <Keys />);
    const form = await screen.findByRole("form", { name: "Create a caller key" });
    fireEvent.change(within(form).getByLabelText("Name"), { target: { value: "batch" } });
    fireEvent.click(await within(form).findByRole("checkbox", { name: "gpt-4o-mini" }));
    fireEvent.submit(form);
    expect((await screen.findByTestId("new-key")).textContent).toBe("tg-secret-9");
    expect(calls).toEqual(['guard key-batch-models model {"allow":["gpt-4o-mini"]}', "createKey", "attach gr_9 key ck_9"]);
  });

  it("is revoked and its guardrail deleted when the attachment fails, and never shown", async () => {
    const revokeKey = vi.fn(async () => ({}));
    const deleteGuardrail = vi.fn(async () => ({}));
    const api = {
      ...base(),
      keys: {
        listKeys: async () => ({ keys: [] }),
        createKey: async (r: { name: string }) => ({ key: { id: "ck_9", name: r.name }, secret: "tg-secret-9" }),
        revokeKey,
      },
      guardrails: {
        listGuardrails: async () => ({ guardrails: [] }),
        createGuardrail: async () => ({ id: "gr_9" }),
        attachGuardrail: async () => {
          throw new ConnectError("internal database error; see the control plane log", Code.Internal);
        },
        deleteGuardrail,
      },
    };
    withSession(api, <Keys />);
    const form = await screen.findByRole("form", { name: "Create a caller key" });
    fireEvent.change(within(form).getByLabelText("Name"), { target: { value: "batch" } });
    fireEvent.click(await within(form).findByRole("checkbox", { name: "gpt-4o" }));
    fireEvent.submit(form);
    expect((await screen.findByRole("alert")).textContent).toBe("internal database error; see the control plane log");
    expect(revokeKey).toHaveBeenCalledWith({ tenant: "acme", key: "ck_9" });
    expect(deleteGuardrail).toHaveBeenCalledWith({ tenant: "acme", guardrail: "gr_9" });
    expect(screen.queryByTestId("new-key")).toBeNull();
  });
});

describe("A key with a budget", () => {
  const budgetApi = (setBudget: (r: { key: string; period: string; amountMicros: bigint }) => Promise<unknown>, revokeKey = vi.fn(async () => ({}))) => {
    const budgets: unknown[] = [];
    return {
      providers: { listProviders: async () => ({ providers: [] }) },
      models: { listModels: async () => ({ models: [] }) },
      guardrails: { listGuardrails: async () => ({ guardrails: [] }) },
      keys: {
        listKeys: async () => ({ keys: budgets.length ? [{ id: "ck_9", name: "batch", prefix: "tg-x", createdAtMs: 1n, expiresAtMs: 0n, revokedAtMs: 0n, allowedProviderIds: [] }] : [] }),
        createKey: async (r: { name: string }) => ({ key: { id: "ck_9", name: r.name }, secret: "tg-secret-9" }),
        revokeKey,
      },
      billing: {
        listBudgets: async () => ({ budgets: [...budgets] }),
        setBudget: vi.fn(async (r: { key: string; period: string; amountMicros: bigint }) => {
          const b = await setBudget(r);
          budgets.push(b);
          return b;
        }),
      },
    };
  };

  it("gets its budget before it is shown, and lists it in its row", async () => {
    const api = budgetApi(async (r) => ({ id: "bg_1", keyId: r.key, period: r.period, amountMicros: r.amountMicros, spentMicros: 0n, softMicros: 0n }));
    withSession(api, <Keys />);
    const form = await screen.findByRole("form", { name: "Create a caller key" });
    fireEvent.change(within(form).getByLabelText("Name"), { target: { value: "batch" } });
    fireEvent.change(within(form).getByLabelText(/^Budget \(USD/), { target: { value: "0" } });
    fireEvent.submit(form);
    expect(await within(form).findByText("The budget must be more than $0 (empty: none).")).toBeTruthy();
    fireEvent.change(within(form).getByLabelText(/^Budget \(USD/), { target: { value: "7.25" } });
    fireEvent.change(within(form).getByLabelText("Budget period"), { target: { value: "week" } });
    fireEvent.submit(form);
    expect((await screen.findByTestId("new-key")).textContent).toBe("tg-secret-9");
    expect(api.billing.setBudget).toHaveBeenCalledWith({ tenant: "acme", key: "ck_9", period: "week", amountMicros: 7_250_000n });
    const row = await screen.findByRole("row", { name: /batch/ });
    expect(row.textContent).toContain("$7.250000/week (spent $0.000000)");
  });

  it("is revoked and never shown when its budget cannot be set", async () => {
    const revokeKey = vi.fn(async () => ({}));
    const api = budgetApi(async () => {
      throw new ConnectError("amount_micros must be positive and at most 1000000000000000", Code.InvalidArgument);
    }, revokeKey);
    withSession(api, <Keys />);
    const form = await screen.findByRole("form", { name: "Create a caller key" });
    fireEvent.change(within(form).getByLabelText("Name"), { target: { value: "batch" } });
    fireEvent.change(within(form).getByLabelText(/^Budget \(USD/), { target: { value: "5" } });
    fireEvent.submit(form);
    expect((await screen.findByRole("alert")).textContent).toMatch(/amount_micros must be positive/);
    expect(revokeKey).toHaveBeenCalledWith({ tenant: "acme", key: "ck_9" });
    expect(screen.queryByTestId("new-key")).toBeNull();
  });
});
