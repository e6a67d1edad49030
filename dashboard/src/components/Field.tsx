import { cloneElement, useId, type ReactElement } from "react";

/**
 * A labelled form control with its validation message: the message is tied
 * to the control (aria-describedby) and the control marked aria-invalid, so
 * screen readers announce both. The control is named by the label alone
 * (not by the label plus its own current value).
 */
export function Field({ label, error, children }: { label: string; error?: string; children: ReactElement<Record<string, unknown>> }) {
  const id = useId();
  return (
    <label className={error ? "invalid" : undefined}>
      {label}
      {cloneElement(children, { "aria-label": label, "aria-invalid": error ? true : undefined, "aria-describedby": error ? id : undefined })}
      {error && (
        <span id={id} className="field-error">
          {error}
        </span>
      )}
    </label>
  );
}
