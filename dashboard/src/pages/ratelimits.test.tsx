import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { type ReactNode } from "react";
import type { Api } from "../api";
import { SessionContext, type Session } from "../session";
import RateLimits, { checkLimits, emptyLimits, MAX_LIMIT } from "./RateLimits";
import Incidents, { components } from "./Incidents";

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

describe("rate limit form validation", () => {
  it("turns whole numbers into exact values; empty is 0 (not limited here)", () => {
    const c = checkLimits({ ...emptyLimits(), requestsPerMinute: " 60 ", tokensPerDay: String(MAX_LIMIT) }, "");
    expect(c.ok).toBe(true);
    if (!c.ok) return;
    expect(c.values.requestsPerMinute).toBe(60n);
    expect(c.values.tokensPerDay).toBe(1n << 50n);
    expect(c.values.requestsPerSecond).toBe(0n);
    expect(c.values.maxConcurrent).toBe(0n);
  });

  it("puts a message on each bad number", () => {
    const c = checkLimits(
      { ...emptyLimits(), requestsPerSecond: "1.5", requestsPerMinute: "-3", requestsPerDay: "0", tokensPerMinute: String(MAX_LIMIT + 1n), tokensPerDay: "1e3", maxConcurrent: "4" },
      "",
    );
    expect(c.ok).toBe(false);
    if (c.ok) return;
    expect(c.errors.requestsPerSecond).toMatch(/whole number/);
    expect(c.errors.requestsPerMinute).toBe("Must not be negative.");
    expect(c.errors.requestsPerDay).toMatch(/At least 1/);
    expect(c.errors.tokensPerMinute).toBe(`At most ${MAX_LIMIT}.`);
    expect(c.errors.tokensPerDay).toMatch(/whole number/);
    expect(c.errors.maxConcurrent).toBeUndefined();
  });

  it("asks for at least one limit or a tier", () => {
    const none = checkLimits(emptyLimits(), "");
    expect(none.ok).toBe(false);
    expect(!none.ok && none.errors.form).toBe("Set at least one limit or a tier.");
    expect(checkLimits(emptyLimits(), "pro").ok).toBe(true);
  });
});

describe("Rate limits page", () => {
  const keys = [{ id: "ck_1", name: "demo-key", revokedAtMs: 0n }];
  const models = [{ id: "md_1", name: "gpt-x" }];

  function api(extra: Record<string, unknown> = {}) {
    const limits: unknown[] = [];
    const setRateLimit = vi.fn(async (r: { scope: { kind: string; target: string }; limits: Record<string, bigint>; tier: string }) => {
      const e = { tenantId: "tn_1", scope: r.scope.kind, targetId: r.scope.target, targetName: "demo-key", limits: r.limits, tier: r.tier, effective: r.limits, updatedAtMs: 1n };
      limits.push(e);
      return e;
    });
    const clearRateLimit = vi.fn(async () => {
      limits.length = 0;
      return { removed: true };
    });
    return {
      setRateLimit,
      clearRateLimit,
      api: {
        rateLimits: {
          listRateLimits: async () => ({ limits: [...limits] }),
          listRateLimitTiers: async () => ({ tiers: [{ name: "pro", limits: { requestsPerMinute: 600n }, updatedAtMs: 1n }] }),
          setRateLimit,
          clearRateLimit,
          ...extra,
        },
        keys: { listKeys: async () => ({ keys }) },
        models: { listModels: async () => ({ models }) },
      },
    };
  }

  it("shows the messages and sends nothing for bad numbers; then sets a key's RPM and lists it", async () => {
    const a = api();
    withSession(a.api, "admin", false, <RateLimits />);
    const form = await screen.findByRole("form", { name: "Set rate limits" });
    fireEvent.change(within(form).getByLabelText("Applies to"), { target: { value: "key" } });
    const rpm = within(form).getByLabelText("Requests / minute");
    fireEvent.change(rpm, { target: { value: "abc" } });
    fireEvent.click(within(form).getByRole("button", { name: "Save limits" }));
    expect(await within(form).findByText("A whole number (empty: not limited here).")).toBeTruthy();
    expect(rpm.getAttribute("aria-invalid")).toBe("true");
    expect(a.setRateLimit).not.toHaveBeenCalled();

    fireEvent.change(rpm, { target: { value: "60" } });
    fireEvent.click(within(form).getByRole("button", { name: "Save limits" }));
    await waitFor(() => expect(a.setRateLimit).toHaveBeenCalledTimes(1));
    const sent = a.setRateLimit.mock.calls[0][0];
    expect(sent.scope).toEqual({ kind: "key", target: "ck_1" });
    expect(sent.limits.requestsPerMinute).toBe(60n);
    expect(sent.limits.requestsPerSecond).toBe(0n);
    expect(sent.tier).toBe("");
    const table = await screen.findByRole("table", { name: /Rate limits of acme/ });
    const row = await within(table).findByRole("row", { name: /key demo-key/ });
    expect(within(row).getAllByRole("cell")[3].textContent).toBe("60");

    // Edit loads the set's own values back into the form (saving replaces the whole set).
    fireEvent.change(within(form).getByLabelText("Applies to"), { target: { value: "tenant" } });
    fireEvent.change(rpm, { target: { value: "" } });
    fireEvent.click(within(row).getByRole("button", { name: "Edit limits of key demo-key" }));
    expect((within(form).getByLabelText("Applies to") as HTMLSelectElement).value).toBe("key");
    expect((within(form).getByLabelText("Key") as HTMLSelectElement).value).toBe("ck_1");
    expect((within(form).getByLabelText("Requests / minute") as HTMLInputElement).value).toBe("60");
    expect((within(form).getByLabelText("Requests / second") as HTMLInputElement).value).toBe("");
  });

  it("clears a limit only when asked twice", async () => {
    const a = api();
    withSession(a.api, "owner", false, <RateLimits />);
    const form = await screen.findByRole("form", { name: "Set rate limits" });
    fireEvent.change(within(form).getByLabelText("Tier"), { target: { value: "pro" } });
    fireEvent.click(within(form).getByRole("button", { name: "Save limits" }));
    await waitFor(() => expect(a.setRateLimit).toHaveBeenCalledTimes(1));
    expect(a.setRateLimit.mock.calls[0][0].scope).toEqual({ kind: "tenant", target: "" });
    fireEvent.click(await screen.findByRole("button", { name: "Clear limits of whole tenant" }));
    expect(a.clearRateLimit).not.toHaveBeenCalled();
    fireEvent.click(screen.getByRole("button", { name: "Really clear the limits of whole tenant" }));
    await waitFor(() => expect(a.clearRateLimit).toHaveBeenCalledWith({ tenant: "acme", scope: { kind: "tenant", target: "" } }));
  });

  it("lets viewers only read; tiers are changed by operators only", async () => {
    withSession(api().api, "viewer", false, <RateLimits />);
    expect(await screen.findByRole("table", { name: /Tiers/ })).toBeTruthy();
    expect(screen.queryByRole("form", { name: "Set rate limits" })).toBeNull();
    cleanup();
    withSession(api().api, "owner", false, <RateLimits />);
    await screen.findByRole("form", { name: "Set rate limits" });
    expect(screen.queryByRole("form", { name: "Set a tier" })).toBeNull();
    expect(screen.queryByRole("button", { name: "Delete tier pro" })).toBeNull();
  });

  it("lets an operator set a tier, with its name checked", async () => {
    const setRateLimitTier = vi.fn(async (r: unknown) => r);
    withSession(api({ setRateLimitTier }).api, "admin", true, <RateLimits />);
    const form = await screen.findByRole("form", { name: "Set a tier" });
    fireEvent.change(within(form).getByLabelText("Tier name"), { target: { value: "my tier" } });
    fireEvent.change(within(form).getByLabelText("Concurrent calls"), { target: { value: "8" } });
    fireEvent.click(within(form).getByRole("button", { name: "Save tier" }));
    expect(await within(form).findByText(/without spaces/)).toBeTruthy();
    expect(setRateLimitTier).not.toHaveBeenCalled();
    fireEvent.change(within(form).getByLabelText("Tier name"), { target: { value: "free" } });
    fireEvent.click(within(form).getByRole("button", { name: "Save tier" }));
    await waitFor(() => expect(setRateLimitTier).toHaveBeenCalledTimes(1));
    expect(setRateLimitTier.mock.calls[0][0]).toMatchObject({ name: "free", limits: { maxConcurrent: 8n, requestsPerMinute: 0n } });
  });

  it("lets an operator delete a tier only when asked twice", async () => {
    const deleteRateLimitTier = vi.fn(async () => ({ removed: true }));
    withSession(api({ deleteRateLimitTier }).api, "admin", true, <RateLimits />);
    fireEvent.click(await screen.findByRole("button", { name: "Delete tier pro" }));
    expect(deleteRateLimitTier).not.toHaveBeenCalled();
    fireEvent.click(screen.getByRole("button", { name: "Really delete tier pro" }));
    await waitFor(() => expect(deleteRateLimitTier).toHaveBeenCalledWith({ name: "pro" }));
    expect(await screen.findByText("Tier pro deleted.")).toBeTruthy();
  });
});

describe("Incidents page", () => {
  it("splits components", () => {
    expect(components(" openai, gpt-4o ,,")).toEqual(["openai", "gpt-4o"]);
  });

  it("posts an incident (title required) and resolves it", async () => {
    const incidents: Record<string, unknown>[] = [];
    const createIncident = vi.fn(async (r: { title: string; impact: string; components: string[] }) => {
      const i = { id: "inc_1", title: r.title, message: "", impact: r.impact, state: "investigating", components: r.components, createdAtMs: 1n, updatedAtMs: 1n, resolvedAtMs: 0n };
      incidents.push(i);
      return i;
    });
    const updateIncident = vi.fn(async (r: { state: string }) => {
      Object.assign(incidents[0], { state: r.state, resolvedAtMs: r.state === "resolved" ? 2n : 0n });
      return incidents[0];
    });
    const api = { status: { listIncidents: async () => ({ incidents: incidents.map((i) => ({ ...i })) }), createIncident, updateIncident } };
    withSession(api, "admin", true, <Incidents />);
    const form = await screen.findByRole("form", { name: "Post an incident" });
    fireEvent.click(within(form).getByRole("button", { name: "Post incident" }));
    expect(await within(form).findByText("A title is required.")).toBeTruthy();
    expect(createIncident).not.toHaveBeenCalled();
    fireEvent.change(within(form).getByLabelText("Title"), { target: { value: "OpenAI errors" } });
    fireEvent.change(within(form).getByLabelText("Components (comma-separated, e.g. openai, gpt-4o)"), { target: { value: "openai" } });
    fireEvent.click(within(form).getByRole("button", { name: "Post incident" }));
    await waitFor(() => expect(createIncident).toHaveBeenCalledWith({ title: "OpenAI errors", message: "", impact: "minor", components: ["openai"] }));
    const update = await screen.findByRole("form", { name: "Update OpenAI errors" });
    fireEvent.change(within(update).getByLabelText("State"), { target: { value: "resolved" } });
    fireEvent.click(within(update).getByRole("button", { name: "Update" }));
    await waitFor(() => expect(updateIncident).toHaveBeenCalledWith({ id: "inc_1", state: "resolved", impact: "minor", message: "" }));
    expect(await screen.findByText("OpenAI errors resolved.")).toBeTruthy();
    await waitFor(() => expect(screen.queryByRole("form", { name: "Update OpenAI errors" })).toBeNull());
  });
});
