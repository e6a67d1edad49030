import { useState } from "react";
import { errorText } from "../api";
import { ConfirmButton } from "../components/ConfirmButton";
import { Notice, type NoticeState } from "../components/Notice";
import { useLoad } from "../components/useLoad";
import { when } from "../format";
import { can, useSession } from "../session";

const KINDS = ["openai", "azure", "anthropic", "gemini", "mock"];

export default function Providers() {
  const { api, tenant, role } = useSession();
  const [notice, setNotice] = useState<NoticeState>(null);
  const { data, error, reload } = useLoad(async () => {
    const [p, h] = await Promise.all([
      api.providers.listProviders({ tenant }),
      api.providers.listProviderHealth({ tenant }),
    ]);
    return { providers: p.providers, health: new Map(h.providers.map((x) => [x.providerId, x])) };
  }, [api, tenant]);
  const writable = can(role, "write");
  const [tests, setTests] = useState<Record<string, { busy: boolean; text?: string; ok?: boolean }>>({});
  const test = async (id: string) => {
    setTests((t) => ({ ...t, [id]: { busy: true } }));
    try {
      const r = await api.console.testProvider({ tenant, provider: id });
      const text = `${r.ok ? "Works" : "Failed"}: ${r.message}${r.statusCode || r.latencyMs ? ` (${r.latencyMs} ms)` : ""}`;
      setTests((t) => ({ ...t, [id]: { busy: false, ok: r.ok, text } }));
    } catch (e) {
      setTests((t) => ({ ...t, [id]: { busy: false, ok: false, text: errorText(e) } }));
    }
  };

  const act = async (what: () => Promise<unknown>, ok: string) => {
    try {
      await what();
      setNotice({ kind: "ok", text: ok });
      await reload();
    } catch (e) {
      setNotice({ kind: "error", text: errorText(e) });
    }
  };

  return (
    <>
      <Notice notice={notice} />
      {error && <p role="alert" className="notice error">{error}</p>}
      {data && (
        <table>
          <caption>Provider credentials of {tenant}</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Kind</th>
              <th scope="col">Base URL</th>
              <th scope="col">API key</th>
              <th scope="col">State</th>
              <th scope="col">Added</th>
              {writable && <th scope="col">Actions</th>}
            </tr>
          </thead>
          <tbody>
            {data.providers.length === 0 && (
              <tr>
                <td colSpan={7}>No providers yet.</td>
              </tr>
            )}
            {data.providers.map((p) => {
              const h = data.health.get(p.id);
              return (
                <tr key={p.id}>
                  <td>{p.name}</td>
                  <td>{p.kind}</td>
                  <td>{p.baseUrl || "(default)"}</td>
                  <td>
                    {p.keyFingerprint ? (
                      <span>
                        fingerprint <code>{p.keyFingerprint}</code>, ends in <code>{p.keyLast4 || "····"}</code>
                      </span>
                    ) : (
                      "no key"
                    )}
                  </td>
                  <td>
                    {h?.disabled ? (
                      <span className="warn" role="note">
                        Out of rotation since {when(h.disabledAtMs)}: {h.reason || "the provider rejected the key"}
                      </span>
                    ) : (
                      "in rotation"
                    )}
                    {tests[p.id]?.text && (
                      <div role="status" className={tests[p.id]?.ok ? "test-ok" : "warn"}>
                        {tests[p.id]?.text}
                      </div>
                    )}
                  </td>
                  <td>{when(p.createdAtMs)}</td>
                  {writable && (
                    <td>
                      <button type="button" disabled={tests[p.id]?.busy} onClick={() => void test(p.id)}>
                        {tests[p.id]?.busy ? "Testing…" : `Test ${p.name}`}
                      </button>
                      {h?.disabled && (
                        <button
                          type="button"
                          onClick={() =>
                            act(
                              () => api.providers.enableProvider({ tenant, provider: p.id }),
                              `Provider ${p.name} is back in rotation.`,
                            )
                          }
                        >
                          Re-enable {p.name}
                        </button>
                      )}
                      <ConfirmButton
                        label={`Delete ${p.name}`}
                        confirmLabel={`Really delete ${p.name}`}
                        onConfirm={() =>
                          act(() => api.providers.deleteProvider({ tenant, provider: p.id }), `Provider ${p.name} deleted.`)
                        }
                      />
                    </td>
                  )}
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {writable && <AddProvider onAdded={(name) => act(async () => undefined, `Provider ${name} added.`)} onError={setNotice} />}
    </>
  );
}

function AddProvider({ onAdded, onError }: { onAdded: (name: string) => void; onError: (n: NoticeState) => void }) {
  const { api, tenant } = useSession();
  const [name, setName] = useState("");
  const [kind, setKind] = useState("openai");
  const [baseUrl, setBaseUrl] = useState("");
  const [apiKey, setApiKey] = useState("");
  const [apiVersion, setApiVersion] = useState("");
  const [busy, setBusy] = useState(false);
  return (
    <form
      aria-label="Add a provider"
      onSubmit={async (e) => {
        e.preventDefault();
        setBusy(true);
        try {
          const settings: Record<string, string> = {};
          if (kind === "azure" && apiVersion.trim()) settings.api_version = apiVersion.trim();
          await api.providers.addProvider({ tenant, name, kind, baseUrl, apiKey, settings });
          // The key is write-only: forget it as soon as the CP has it.
          setApiKey("");
          setName("");
          onAdded(name);
        } catch (err) {
          onError({ kind: "error", text: errorText(err) });
        } finally {
          setBusy(false);
        }
      }}
    >
      <h2>Add a provider</h2>
      <label>
        Name
        <input required value={name} onChange={(e) => setName(e.target.value)} />
      </label>
      <label>
        Kind
        <select aria-label="Kind" value={kind} onChange={(e) => setKind(e.target.value)}>
          {KINDS.map((k) => (
            <option key={k}>{k}</option>
          ))}
        </select>
      </label>
      <label>
        Base URL
        <input
          type="url"
          placeholder={kind === "openai" ? "https://api.openai.com/v1" : "(default for the kind)"}
          value={baseUrl}
          onChange={(e) => setBaseUrl(e.target.value)}
        />
      </label>
      <label>
        API key (write-only: stored encrypted, never shown again)
        <input type="password" autoComplete="off" value={apiKey} onChange={(e) => setApiKey(e.target.value)} />
      </label>
      {kind === "azure" && (
        <label>
          API version
          <input placeholder="2024-10-21" value={apiVersion} onChange={(e) => setApiVersion(e.target.value)} />
        </label>
      )}
      <button type="submit" disabled={busy}>
        Add provider
      </button>
    </form>
  );
}
