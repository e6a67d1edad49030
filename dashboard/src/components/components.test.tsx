import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { ConfirmButton } from "./ConfirmButton";
import { CopyButton } from "./CopyButton";
import { Notice } from "./Notice";
import { usd } from "../format";
import { can } from "../session";

afterEach(cleanup);

describe("ConfirmButton", () => {
  it("runs the action only after the second, explicit click", async () => {
    const action = vi.fn();
    render(<ConfirmButton label="Delete p1" confirmLabel="Really delete p1" onConfirm={action} />);
    fireEvent.click(screen.getByRole("button", { name: "Delete p1" }));
    expect(action).not.toHaveBeenCalled();
    fireEvent.click(screen.getByRole("button", { name: "Cancel" }));
    expect(action).not.toHaveBeenCalled();
    fireEvent.click(screen.getByRole("button", { name: "Delete p1" }));
    const confirm = screen.getByRole("button", { name: "Really delete p1" });
    expect(document.activeElement).toBe(confirm);
    fireEvent.click(confirm);
    await waitFor(() => expect(action).toHaveBeenCalledTimes(1));
    expect(screen.getByRole("button", { name: "Delete p1" })).toBeTruthy();
  });
});

describe("CopyButton", () => {
  it("copies the text and says so", async () => {
    const writeText = vi.fn().mockResolvedValue(undefined);
    Object.defineProperty(navigator, "clipboard", { value: { writeText }, configurable: true });
    render(<CopyButton text="tg-secret" label="Copy key" />);
    fireEvent.click(screen.getByRole("button", { name: "Copy key" }));
    await screen.findByText("Copied to the clipboard.");
    expect(writeText).toHaveBeenCalledWith("tg-secret");
  });

  it("explains when the clipboard refuses", async () => {
    const writeText = vi.fn().mockRejectedValue(new Error("denied"));
    Object.defineProperty(navigator, "clipboard", { value: { writeText }, configurable: true });
    render(<CopyButton text="tg-secret" />);
    fireEvent.click(screen.getByRole("button", { name: "Copy" }));
    await screen.findByText(/Could not copy/);
  });
});

describe("Notice", () => {
  it("announces errors as alerts and confirmations as status", () => {
    const { rerender } = render(<Notice notice={{ kind: "error", text: "tenant 'x' not found" }} />);
    expect(screen.getByRole("alert").textContent).toBe("tenant 'x' not found");
    rerender(<Notice notice={{ kind: "ok", text: "Key k revoked." }} />);
    expect(screen.getByRole("status").textContent).toBe("Key k revoked.");
    rerender(<Notice notice={null} />);
    expect(screen.queryByRole("status")).toBeNull();
  });
});

describe("formatting and roles", () => {
  it("formats micro-dollars exactly", () => {
    expect(usd(0n)).toBe("$0.000000");
    expect(usd(1_234_567_891n)).toBe("$1,234.567891");
    expect(usd(-5n)).toBe("-$0.000005");
    expect(usd(9_007_199_254_740_993n)).toBe("$9,007,199,254.740993");
  });

  it("mirrors the control plane's role matrix", () => {
    expect([can("viewer", "read"), can("viewer", "createKey")]).toEqual([true, false]);
    expect([can("member", "createKey"), can("member", "write")]).toEqual([true, false]);
    expect([can("admin", "write"), can("admin", "users"), can("owner", "users")]).toEqual([true, true, true]);
    expect(can("root", "read")).toBe(true);
    expect(can("root", "createKey")).toBe(false);
  });
});
