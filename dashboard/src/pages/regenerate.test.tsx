import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, fireEvent, render, screen, within } from "@testing-library/react";
import { Suspense, type ReactNode } from "react";
import { ConnectError, Code } from "@connectrpc/connect";
import type { Api } from "../api";
import { SessionContext, type Session } from "../session";
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

const OLD = "tg-OldSecretOldSecretOldSecretOldSecret0123456";
const NEW = "tg-NewSecretNewSecretNewSecretNewSecret6543210";

function keysApi(regenerateKey: (r: { tenant: string; key: string }) => Promise<unknown>, extra: object[] = []) {
  const key = { id: "ck_1", name: "backend", prefix: OLD.slice(0, 7), createdAtMs: 1n, expiresAtMs: 0n, revokedAtMs: 0n, allowedProviderIds: [] as string[] };
  const keys = [key, ...extra];
  return {
    key,
    api: {
      keys: { listKeys: async () => ({ keys: [...keys] }), createKey: vi.fn(), revokeKey: vi.fn(), regenerateKey },
      providers: { listProviders: async () => ({ providers: [] }) },
      models: { listModels: async () => ({ models: [] }) },
      guardrails: { listGuardrails: async () => ({ guardrails: [] }) },
      billing: { listBudgets: async () => ({ budgets: [] }) },
    },
  };
}

describe("Regenerating a key", () => {
  it("asks in a dialog first; Cancel and Escape change nothing", async () => {
    const regenerateKey = vi.fn();
    const { api } = keysApi(regenerateKey);
    withSession(api, "admin", <Keys />);
    const open = await screen.findByRole("button", { name: "Regenerate backend" });
    fireEvent.click(open);
    const dialog = screen.getByRole("alertdialog", { name: "Regenerate key backend?" });
    expect(dialog.getAttribute("aria-modal")).toBe("true");
    // The dialog says what happens to the old secret; Cancel has the focus.
    expect(dialog.textContent).toContain("The current secret stops working within a second");
    expect(document.activeElement).toBe(within(dialog).getByRole("button", { name: "Cancel" }));
    // Tab stays inside the dialog.
    fireEvent.keyDown(document, { key: "Tab" });
    expect(document.activeElement).toBe(within(dialog).getByRole("button", { name: "Regenerate backend now" }));
    fireEvent.keyDown(document, { key: "Tab" });
    expect(document.activeElement).toBe(within(dialog).getByRole("button", { name: "Cancel" }));
    fireEvent.click(within(dialog).getByRole("button", { name: "Cancel" }));
    expect(screen.queryByRole("alertdialog")).toBeNull();
    expect(document.activeElement).toBe(open);
    fireEvent.click(open);
    screen.getByRole("alertdialog");
    fireEvent.keyDown(document, { key: "Escape" });
    expect(screen.queryByRole("alertdialog")).toBeNull();
    expect(regenerateKey).not.toHaveBeenCalled();
    expect(screen.queryByTestId("new-key")).toBeNull();
  });

  it("shows the new secret once, with a copy button, after the confirmation", async () => {
    const regenerateKey = vi.fn(async () => ({
      key: { id: "ck_1", name: "backend", prefix: NEW.slice(0, 7), createdAtMs: 1n, expiresAtMs: 0n, revokedAtMs: 0n, allowedProviderIds: [] },
      secret: NEW,
    }));
    const { api, key } = keysApi(regenerateKey);
    withSession(api, "member", <Keys />);
    fireEvent.click(await screen.findByRole("button", { name: "Regenerate backend" }));
    // The list reloads after the call: it then shows the new prefix.
    key.prefix = NEW.slice(0, 7);
    fireEvent.click(screen.getByRole("button", { name: "Regenerate backend now" }));
    expect((await screen.findByTestId("new-key")).textContent).toBe(NEW);
    expect(regenerateKey).toHaveBeenCalledTimes(1);
    expect(regenerateKey).toHaveBeenCalledWith({ tenant: "acme", key: "ck_1" });
    const shown = screen.getByRole("region", { name: "New caller key" });
    expect(shown.textContent).toContain("backend regenerated: its old secret no longer works");
    expect(within(shown).getByRole("button", { name: "Copy key" })).toBeTruthy();
    expect(screen.queryByRole("alertdialog")).toBeNull();
    const row = await screen.findByRole("row", { name: new RegExp(`backend ${NEW.slice(0, 7)}`) });
    expect(row.textContent).not.toContain(NEW);
    fireEvent.click(screen.getByRole("button", { name: "I have copied it" }));
    expect(screen.queryByTestId("new-key")).toBeNull();
    expect(document.body.textContent).not.toContain(NEW);
  });

  it("shows the API's refusal and no secret", async () => {
    const regenerateKey = vi.fn(async () => {
      throw new ConnectError("role member may regenerate only the keys it created", Code.PermissionDenied);
    });
    const { api } = keysApi(regenerateKey);
    withSession(api, "member", <Keys />);
    fireEvent.click(await screen.findByRole("button", { name: "Regenerate backend" }));
    fireEvent.click(screen.getByRole("button", { name: "Regenerate backend now" }));
    expect((await screen.findByRole("alert")).textContent).toBe("role member may regenerate only the keys it created");
    expect(screen.queryByTestId("new-key")).toBeNull();
    expect(screen.queryByRole("alertdialog")).toBeNull();
  });

  it("is offered for active keys to members and above only", async () => {
    const revoked = { id: "ck_2", name: "old", prefix: "tg-Zzzz", createdAtMs: 1n, expiresAtMs: 0n, revokedAtMs: 5n, allowedProviderIds: [] as string[] };
    const expired = { id: "ck_3", name: "stale", prefix: "tg-Yyyy", createdAtMs: 1n, expiresAtMs: 2n, revokedAtMs: 0n, allowedProviderIds: [] as string[] };
    const { api } = keysApi(vi.fn(), [revoked, expired]);
    withSession(api, "admin", <Keys />);
    await screen.findByRole("button", { name: "Regenerate backend" });
    expect(screen.queryByRole("button", { name: "Regenerate old" })).toBeNull();
    expect(screen.queryByRole("button", { name: "Regenerate stale" })).toBeNull();
    cleanup();
    withSession(api, "viewer", <Keys />);
    await screen.findByRole("row", { name: /backend/ });
    expect(screen.queryByRole("button", { name: /Regenerate/ })).toBeNull();
  });
});
