export type NoticeState = { kind: "ok" | "error"; text: string } | null;

/** The outcome of an action: confirmation (status) or the API's error (alert). */
export function Notice({ notice }: { notice: NoticeState }) {
  if (!notice) return null;
  return notice.kind === "error" ? (
    <p role="alert" className="notice error">
      {notice.text}
    </p>
  ) : (
    <p role="status" className="notice ok">
      {notice.text}
    </p>
  );
}
