import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, fireEvent, render, screen, within } from "@testing-library/react";
import { Suspense, type ReactNode } from "react";
import { ConnectError, Code } from "@connectrpc/connect";
import type { Api } from "../api";
import { SessionContext, type Session } from "../session";
import Providers from "./Providers";
import Keys from "./Keys";

afterEach(cleanup);

function withSession(api: Partial<Record<keyof Api, unknown>>, role: string, node: ReactNode) {
  const session = {
    api: api as unknown as Api,
    principal: { kind: "user", tenantName: "acme", role } as Session["principal"],
    tenant: "acme",
    role,
    isOperator: false,
    reloadTenants: async () => {},
  } satisfies Session;
  return render(
    <SessionContext.Provider value={session}>
      <Suspense fallback={null}>{node}</Suspense>
    </SessionContext.Provider>,
  );
}

const provider = {
  id: "pv_1",
  name: "openai-main",
  kind: "openai",
  baseUrl: "https://api.openai.com/v1",
  keyFingerprint: "0123456789ab",
  keyLast4: "wxyz",
  createdAtMs: 1_700_000_000_000n,
};

describe("Providers page", () => {
  it("warns about a credential out of rotation and re-enables it", async () => {
    let disabled = true;
    const enableProvider = vi.fn(async () => {
      disabled = false;
      return {};
    });
    const api = {
      providers: {
        listProviders: async () => ({ providers: [provider] }),
        listProviderHealth: async () => ({
          providers: [{ providerId: "pv_1", providerName: "openai-main", disabled, disabledAtMs: 1_700_000_000_000n, reason: "401 from upstream" }],
        }),
        enableProvider,
        deleteProvider: vi.fn(),
        addProvider: vi.fn(),
      },
    };
    withSession(api, "admin", <Providers />);
    const row = await screen.findByRole("row", { name: /openai-main/ });
    expect(within(row).getByText(/Out of rotation since .*401 from upstream/)).toBeTruthy();
    expect(row.textContent).toContain("0123456789ab");
    expect(row.textContent).toContain("wxyz");
    fireEvent.click(within(row).getByRole("button", { name: "Re-enable openai-main" }));
    await screen.findByText("Provider openai-main is back in rotation.");
    expect(enableProvider).toHaveBeenCalledWith({ tenant: "acme", provider: "pv_1" });
    expect(await screen.findByText("in rotation")).toBeTruthy();
  });

  it("shows the API's error text when adding fails, and hides writes from viewers", async () => {
    const addProvider = vi.fn(async () => {
      throw new ConnectError("provider 'openai-main' already exists", Code.AlreadyExists);
    });
    const api = {
      providers: {
        listProviders: async () => ({ providers: [provider] }),
        listProviderHealth: async () => ({ providers: [] }),
        addProvider,
      },
    };
    withSession(api, "admin", <Providers />);
    const form = await screen.findByRole("form", { name: "Add a provider" });
    fireEvent.change(within(form).getByLabelText("Name"), { target: { value: "openai-main" } });
    fireEvent.submit(form);
    expect((await screen.findByRole("alert")).textContent).toBe("provider 'openai-main' already exists");
    cleanup();
    withSession(api, "viewer", <Providers />);
    await screen.findByRole("row", { name: /openai-main/ });
    expect(screen.queryByRole("form", { name: "Add a provider" })).toBeNull();
    expect(screen.queryByRole("button", { name: /Delete/ })).toBeNull();
  });
});

describe("Provider connection test", () => {
  it("shows the outcome next to the provider, without changing its rotation state", async () => {
    const testProvider = vi.fn(async () => ({ ok: false, statusCode: 401, latencyMs: 12n, message: "401: the provider rejected the key", url: "" }));
    const api = {
      providers: { listProviders: async () => ({ providers: [provider] }), listProviderHealth: async () => ({ providers: [] }) },
      console: { testProvider },
    };
    withSession(api, "admin", <Providers />);
    const row = await screen.findByRole("row", { name: /openai-main/ });
    fireEvent.click(within(row).getByRole("button", { name: "Test openai-main" }));
    expect((await within(row).findByText(/^Failed:/)).textContent).toBe("Failed: 401: the provider rejected the key (12 ms)");
    expect(testProvider).toHaveBeenCalledWith({ tenant: "acme", provider: "pv_1" });
    expect(within(row).getByText("in rotation")).toBeTruthy();
  });
});

describe("Keys page", () => {
  it("shows a new key once, with a copy button, until dismissed", async () => {
    const keys: { id: string; name: string; prefix: string; createdAtMs: bigint; expiresAtMs: bigint; revokedAtMs: bigint; allowedProviderIds: string[] }[] = [];
    const createKey = vi.fn(async ({ name }: { name: string }) => {
      const key = { id: "ck_1", name, prefix: "tg-AbCd", createdAtMs: 1n, expiresAtMs: 0n, revokedAtMs: 0n, allowedProviderIds: [] as string[] };
      keys.push(key);
      return { key, secret: "tg-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg" };
    });
    const api = {
      keys: { listKeys: async () => ({ keys: [...keys] }), createKey, revokeKey: vi.fn() },
      providers: { listProviders: async () => ({ providers: [] }) },
      models: { listModels: async () => ({ models: [] }) },
      guardrails: { listGuardrails: async () => ({ guardrails: [] }) },
      billing: { listBudgets: async () => ({ budgets: [] }) },
    };
    withSession(api, "member", <Keys />);
    const form = await screen.findByRole("form", { name: "Create a caller key" });
    fireEvent.change(within(form).getByLabelText("Name"), { target: { value: "backend" } });
    fireEvent.submit(form);
    expect((await screen.findByTestId("new-key")).textContent).toBe("tg-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg");
    expect(createKey).toHaveBeenCalledWith({ tenant: "acme", name: "backend", expiresAtMs: 0n, providers: [] });
    expect(screen.getByRole("button", { name: "Copy key" })).toBeTruthy();
    // Members may revoke (their own) keys; viewers see no revoke at all.
    expect(await screen.findByRole("row", { name: /backend/ })).toBeTruthy();
    expect(screen.getByRole("button", { name: "Revoke backend" })).toBeTruthy();
    // Members cannot set budgets (SetBudget needs the admin role): no budget field.
    expect(within(form).queryByLabelText(/Budget/)).toBeNull();
    fireEvent.click(screen.getByRole("button", { name: "I have copied it" }));
    expect(screen.queryByTestId("new-key")).toBeNull();
  });
});
