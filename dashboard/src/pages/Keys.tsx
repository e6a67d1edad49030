import { useState } from "react";
import { errorText } from "../api";
import { ConfirmButton } from "../components/ConfirmButton";
import { CopyButton } from "../components/CopyButton";
import { Notice, type NoticeState } from "../components/Notice";
import { useLoad } from "../components/useLoad";
import { when } from "../format";
import { can, useSession } from "../session";

export default function Keys() {
  const { api, tenant, role } = useSession();
  const [notice, setNotice] = useState<NoticeState>(null);
  const [created, setCreated] = useState<{ name: string; secret: string } | null>(null);
  const [name, setName] = useState("");
  const [days, setDays] = useState("");
  const { data, error, reload } = useLoad(() => api.keys.listKeys({ tenant }), [api, tenant]);

  return (
    <>
      <Notice notice={notice} />
      {created && (
        <section className="secret" aria-label="New caller key">
          <p>
            Key <strong>{created.name}</strong> created. Copy it now: it is shown only once.
          </p>
          <p>
            <code data-testid="new-key">{created.secret}</code> <CopyButton text={created.secret} label="Copy key" />
          </p>
          <button type="button" onClick={() => setCreated(null)}>
            I have copied it
          </button>
        </section>
      )}
      {error && <p role="alert" className="notice error">{error}</p>}
      {data && (
        <table>
          <caption>Caller keys of {tenant}</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Prefix</th>
              <th scope="col">Created</th>
              <th scope="col">Expires</th>
              <th scope="col">State</th>
              {can(role, "createKey") && <th scope="col">Actions</th>}
            </tr>
          </thead>
          <tbody>
            {data.keys.length === 0 && (
              <tr>
                <td colSpan={6}>No keys yet.</td>
              </tr>
            )}
            {data.keys.map((k) => (
              <tr key={k.id}>
                <td>{k.name}</td>
                <td>
                  <code>{k.prefix}…</code>
                </td>
                <td>{when(k.createdAtMs)}</td>
                <td>{k.expiresAtMs ? when(k.expiresAtMs) : "never"}</td>
                <td>{k.revokedAtMs ? `revoked ${when(k.revokedAtMs)}` : "active"}</td>
                {/* Members may revoke the keys they created; the API says so otherwise. */}
                {can(role, "createKey") && (
                  <td>
                    {!k.revokedAtMs && (
                      <ConfirmButton
                        label={`Revoke ${k.name}`}
                        confirmLabel={`Really revoke ${k.name}`}
                        onConfirm={async () => {
                          try {
                            await api.keys.revokeKey({ tenant, key: k.id });
                            setNotice({ kind: "ok", text: `Key ${k.name} revoked.` });
                            await reload();
                          } catch (e) {
                            setNotice({ kind: "error", text: errorText(e) });
                          }
                        }}
                      />
                    )}
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {can(role, "createKey") && (
        <form
          aria-label="Create a caller key"
          onSubmit={async (e) => {
            e.preventDefault();
            try {
              const d = days.trim() ? Number(days) : 0;
              if (!Number.isInteger(d) || d < 0) throw new Error("Expiry must be a whole number of days (empty: never).");
              const expiresAtMs = d ? BigInt(Date.now() + d * 86_400_000) : 0n;
              const r = await api.keys.createKey({ tenant, name, expiresAtMs });
              setCreated({ name: r.key?.name ?? name, secret: r.secret });
              setNotice(null);
              setName("");
              await reload();
            } catch (err) {
              setNotice({ kind: "error", text: errorText(err) });
            }
          }}
        >
          <h2>Create a caller key</h2>
          <label>
            Name
            <input required value={name} onChange={(e) => setName(e.target.value)} />
          </label>
          <label>
            Expires after (days, empty: never)
            <input inputMode="numeric" value={days} onChange={(e) => setDays(e.target.value)} />
          </label>
          <button type="submit">Create key</button>
        </form>
      )}
    </>
  );
}
