import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { type ReactNode } from "react";
import type { Api } from "../api";
import { SessionContext, type Session } from "../session";
import DataPlanes, { checkExpiryDays, checkGroupName } from "./DataPlanes";

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

type Tok = { id: string; groupId: string; name: string; last4: string; createdAtMs: bigint; expiresAtMs: bigint; revokedAtMs: bigint };

function fakeGroups() {
  const groups = [{ id: "dpg_1", name: "acme-onprem", tenantId: "tn_acme", createdAtMs: 1n }];
  const tokens: Tok[] = [];
  const secret = "tgdr-SeCrEt0123456789abcdefWXYZ";
  const dpGroups = {
    listDataPlaneGroups: vi.fn(async () => ({ groups: [...groups] })),
    listDataPlaneTokens: vi.fn(async () => ({ tokens: [...tokens] })),
    createDataPlaneToken: vi.fn(async (r: { group: string; tenant: string; name: string; expiresAtMs: bigint }) => {
      const token = { id: "dpt_1", groupId: r.group, name: r.name, last4: secret.slice(-4), createdAtMs: 1n, expiresAtMs: r.expiresAtMs, revokedAtMs: 0n };
      tokens.push(token);
      return { token, secret };
    }),
    revokeDataPlaneToken: vi.fn(async (r: { tokenId: string }) => {
      const t = tokens.find((x) => x.id === r.tokenId) as Tok;
      t.revokedAtMs = 2n;
      return t;
    }),
    createDataPlaneGroup: vi.fn(async (r: { name: string; tenant: string }) => {
      const g = { id: `dpg_${groups.length + 1}`, name: r.name, tenantId: r.tenant ? "tn_acme" : "", createdAtMs: 3n };
      groups.push(g);
      return g;
    }),
  };
  return { dpGroups, secret };
}

describe("data-plane form checks", () => {
  it("explains bad names and expiries", () => {
    expect(checkGroupName("acme-onprem")).toBeNull();
    expect(checkGroupName("two words")).toMatch(/without spaces/);
    expect(checkGroupName("")).toMatch(/without spaces/);
    expect(checkGroupName("shared")).toMatch(/built-in/);
    expect(checkExpiryDays("")).toBe(0);
    expect(checkExpiryDays("30")).toBe(30);
    expect(checkExpiryDays("1.5")).toMatch(/whole number/);
    expect(checkExpiryDays("0")).toMatch(/whole number/);
  });
});

describe("Data planes page", () => {
  it("a tenant owner creates a token of its group: shown once, then listed by its last 4, revoked when asked twice", async () => {
    const { dpGroups, secret } = fakeGroups();
    withSession({ dpGroups }, "owner", false, <DataPlanes />);
    // Tenant users list their tenant's groups; no node list (operators only), no group creation.
    await screen.findByText("tenant acme only");
    expect(dpGroups.listDataPlaneGroups).toHaveBeenCalledWith({ tenant: "acme" });
    expect(screen.queryByRole("form", { name: "Create a data-plane group" })).toBeNull();
    fireEvent.click(screen.getByRole("button", { name: "Tokens of acme-onprem" }));
    const form = await screen.findByRole("form", { name: "Create a token for acme-onprem" });
    fireEvent.change(within(form).getByLabelText("Token name"), { target: { value: "rack 1" } });
    fireEvent.change(within(form).getByLabelText(/Expires after/), { target: { value: "-3" } });
    fireEvent.submit(form);
    expect(await within(form).findByText(/without spaces/)).toBeTruthy();
    expect(within(form).getByText(/whole number of days/)).toBeTruthy();
    expect(dpGroups.createDataPlaneToken).not.toHaveBeenCalled();
    fireEvent.change(within(form).getByLabelText("Token name"), { target: { value: "rack-1" } });
    fireEvent.change(within(form).getByLabelText(/Expires after/), { target: { value: "" } });
    fireEvent.submit(form);
    expect((await screen.findByTestId("new-dp-token")).textContent).toBe(secret);
    expect(dpGroups.createDataPlaneToken).toHaveBeenCalledWith({ group: "dpg_1", tenant: "acme", name: "rack-1", expiresAtMs: 0n });
    expect(screen.getByRole("button", { name: "Copy token" })).toBeTruthy();
    const table = screen.getByRole("table", { name: "Tokens of acme-onprem" });
    const row = await within(table).findByRole("row", { name: /rack-1/ });
    expect(row.textContent).toContain("…WXYZ");
    expect(row.textContent).not.toContain(secret);
    // Dismissed: the secret is gone from the page for good.
    fireEvent.click(screen.getByRole("button", { name: "I have copied it" }));
    expect(screen.queryByTestId("new-dp-token")).toBeNull();
    expect(document.body.textContent).not.toContain(secret);
    fireEvent.click(within(row).getByRole("button", { name: "Revoke rack-1" }));
    expect(dpGroups.revokeDataPlaneToken).not.toHaveBeenCalled();
    fireEvent.click(within(row).getByRole("button", { name: /Really revoke rack-1/ }));
    await waitFor(() => expect(dpGroups.revokeDataPlaneToken).toHaveBeenCalledWith({ tokenId: "dpt_1", tenant: "acme" }));
    expect(await within(table).findByText(/^revoked/)).toBeTruthy();
  });

  it("viewers list tokens but cannot create or revoke them", async () => {
    const { dpGroups } = fakeGroups();
    withSession({ dpGroups }, "viewer", false, <DataPlanes />);
    fireEvent.click(await screen.findByRole("button", { name: "Tokens of acme-onprem" }));
    await screen.findByText("No tokens yet.");
    expect(screen.queryByRole("form", { name: /Create a token/ })).toBeNull();
  });

  it("an operator sees every group and the connected nodes with their group, and creates a tenant-scoped group", async () => {
    const { dpGroups } = fakeGroups();
    const api = {
      dpGroups,
      tenants: { listTenants: async () => ({ tenants: [{ id: "tn_acme", name: "acme" }] }) },
      dataPlanes: {
        getConfigStatus: async () => ({
          version: 7n,
          dataPlanes: [
            { nodeId: "acme-onprem/rack-a", connected: true, ackedVersion: 7n, rejectedVersion: 0n, rejectReason: "", lastSeenMs: 5n, groupName: "acme-onprem", groupId: "dpg_1", tokenId: "dpt_1", tenantId: "tn_acme" },
            { nodeId: "dev-dp", connected: false, ackedVersion: 6n, rejectedVersion: 0n, rejectReason: "", lastSeenMs: 4n, groupName: "", groupId: "", tokenId: "", tenantId: "" },
          ],
        }),
      },
    };
    withSession(api, "owner", true, <DataPlanes />);
    await screen.findByText("tenant acme only");
    expect(dpGroups.listDataPlaneGroups).toHaveBeenCalledWith({ tenant: "" });
    const nodes = await screen.findByRole("table", { name: /connected to this control plane/ });
    expect(within(nodes).getByRole("row", { name: /acme-onprem\/rack-a yes acme-onprem 7/ })).toBeTruthy();
    expect(within(nodes).getByRole("row", { name: /dev-dp no shared 6 \(behind\)/ })).toBeTruthy();
    const form = screen.getByRole("form", { name: "Create a data-plane group" });
    fireEvent.change(within(form).getByLabelText("Group name"), { target: { value: "acme-edge" } });
    fireEvent.submit(form);
    await screen.findByText("Group acme-edge created (tenant acme only).");
    expect(dpGroups.createDataPlaneGroup).toHaveBeenCalledWith({ name: "acme-edge", tenant: "acme" });
    // The new group's tokens open at once, ready for its first token.
    expect(await screen.findByRole("form", { name: "Create a token for acme-edge" })).toBeTruthy();
  });
});
