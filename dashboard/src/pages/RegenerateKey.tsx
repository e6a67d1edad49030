import { useEffect, useId, useRef, useState } from "react";
import { errorText } from "../api";
import { useSession } from "../session";

/**
 * "Regenerate" for one caller key: a confirmation dialog that says what
 * happens to the old secret, then `KeyService.RegenerateKey`. The new secret
 * goes to `onRegenerated` (the page shows it once); the key's id, name,
 * allowlists, budgets, limits and expiry stay.
 */
export function RegenerateKey({
  keyId,
  keyName,
  onRegenerated,
  onError,
}: {
  keyId: string;
  keyName: string;
  onRegenerated: (name: string, secret: string) => Promise<void> | void;
  onError: (text: string) => void;
}) {
  const { api, tenant } = useSession();
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const trigger = useRef<HTMLButtonElement>(null);
  const dialog = useRef<HTMLDivElement>(null);
  const title = useId();
  const body = useId();
  const close = () => {
    setOpen(false);
    trigger.current?.focus();
  };
  useEffect(() => {
    if (!open) return;
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape" && !busy) close();
      // Modal: Tab cycles through the dialog's own buttons.
      if (e.key === "Tab" && dialog.current) {
        const buttons = [...dialog.current.querySelectorAll("button")];
        const at = buttons.indexOf(document.activeElement as HTMLButtonElement);
        const next = (at + (e.shiftKey ? buttons.length - 1 : 1)) % buttons.length;
        e.preventDefault();
        buttons[at < 0 ? 0 : next]?.focus();
      }
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  });
  return (
    <>
      <button type="button" ref={trigger} onClick={() => setOpen(true)}>
        Regenerate {keyName}
      </button>
      {open && (
        <div className="dialog-backdrop">
          <div className="dialog" ref={dialog} role="alertdialog" aria-modal="true" aria-labelledby={title} aria-describedby={body}>
            <h2 id={title}>Regenerate key {keyName}?</h2>
            <p id={body}>
              The key gets a new secret, shown once. The current secret stops working within a second: every app
              that uses it is refused (401) until it is given the new one. The key's name, providers, models,
              budgets, rate limits and expiry stay as they are.
            </p>
            <div className="dialog-actions">
              <button
                type="button"
                className="danger"
                disabled={busy}
                onClick={async () => {
                  setBusy(true);
                  try {
                    const r = await api.keys.regenerateKey({ tenant, key: keyId });
                    setOpen(false);
                    await onRegenerated(r.key?.name ?? keyName, r.secret);
                  } catch (e) {
                    setOpen(false);
                    onError(errorText(e));
                  } finally {
                    setBusy(false);
                  }
                }}
              >
                Regenerate {keyName} now
              </button>
              <button type="button" autoFocus disabled={busy} onClick={close}>
                Cancel
              </button>
            </div>
          </div>
        </div>
      )}
    </>
  );
}
