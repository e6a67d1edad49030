import { useState } from "react";
import { errorText } from "../api";
import { ConfirmButton } from "../components/ConfirmButton";
import { Field } from "../components/Field";
import { Notice, type NoticeState } from "../components/Notice";
import { useLoad } from "../components/useLoad";
import type { Guardrail } from "../gen/tollgate/admin/v1/guardrails_pb";
import { can, useSession } from "../session";

/** Settings templates per kind (docs/guardrails.md). */
export const TEMPLATES: Record<string, string> = {
  keyword: '{"words": ["secret project"], "case_sensitive": false, "whole_word": true}',
  regex: '{"patterns": ["\\\\bACME-\\\\d{6}\\\\b"]}',
  pii: '{"types": ["email", "credit_card"]}',
  size: '{"max_bytes": 100000, "max_tokens": 0, "max_messages": 0}',
  model: '{"allow": ["gpt-4o-mini"], "deny": []}',
  webhook: '{"url": "https://guard.example/check", "timeout_ms": 1000, "fail": "closed"}',
};
const KINDS = Object.keys(TEMPLATES);
const ACTIONS = ["block", "redact", "log"];
const DIRECTIONS = ["input", "output", "both"];

/** Client-side checks before the control plane validates the settings for real. */
export function checkGuardrail(f: { name: string; kind: string; action: string; settings: string }): Record<string, string> {
  const e: Record<string, string> = {};
  if (!/^\S{1,200}$/.test(f.name.trim())) e.name = "A name without spaces.";
  try {
    const v: unknown = JSON.parse(f.settings);
    if (typeof v !== "object" || v === null || Array.isArray(v)) e.settings = "Settings are a JSON object, like the template.";
  } catch (err) {
    e.settings = `Not valid JSON: ${(err as Error).message}`;
  }
  if (f.action === "redact" && (f.kind === "size" || f.kind === "model")) e.action = `A ${f.kind} guardrail cannot redact; use block or log.`;
  return e;
}

export default function Guardrails() {
  const { api, tenant, role } = useSession();
  const [notice, setNotice] = useState<NoticeState>(null);
  const [editing, setEditing] = useState<Guardrail | null>(null);
  const { data, error, reload } = useLoad(async () => {
    const [g, k, m] = await Promise.all([api.guardrails.listGuardrails({ tenant }), api.keys.listKeys({ tenant }), api.models.listModels({ tenant })]);
    return { guardrails: g.guardrails, keys: k.keys.filter((x) => !x.revokedAtMs), models: m.models };
  }, [api, tenant]);
  const writable = can(role, "write");
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
      {!data && !error && <p role="status">Loading…</p>}
      {data && (
        <div className="scroll">
          <table>
            <caption>Guardrails of {tenant} (checked in name order)</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Kind</th>
                <th scope="col">Action</th>
                <th scope="col">Direction</th>
                <th scope="col">Settings</th>
                <th scope="col">Attached to</th>
                {writable && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {data.guardrails.length === 0 && (
                <tr>
                  <td colSpan={7}>No guardrails yet.</td>
                </tr>
              )}
              {data.guardrails.map((g) => (
                <tr key={g.id}>
                  <td>{g.name}</td>
                  <td>{g.kind}</td>
                  <td>{g.action}</td>
                  <td>{g.direction}</td>
                  <td>
                    <code>{g.settings}</code>
                  </td>
                  <td>
                    {g.attachments.length === 0 && <span className="hint">nothing: not enforced</span>}
                    <ul className="chips">
                      {g.attachments.map((a) => (
                        <li key={`${a.scope}/${a.targetId}`}>
                          {a.scope === "tenant" ? "whole tenant" : `${a.scope} ${a.targetName}`}
                          {writable && (
                            <button
                              type="button"
                              aria-label={`Detach ${g.name} from ${a.scope === "tenant" ? "the tenant" : `${a.scope} ${a.targetName}`}`}
                              onClick={() =>
                                act(() => api.guardrails.detachGuardrail({ tenant, guardrail: g.id, scope: a.scope, target: a.targetId }), `${g.name} detached.`)
                              }
                            >
                              ×
                            </button>
                          )}
                        </li>
                      ))}
                    </ul>
                    {writable && <AttachForm guardrail={g} keys={data.keys} models={data.models} onDone={act} />}
                  </td>
                  {writable && (
                    <td>
                      <button type="button" onClick={() => setEditing(g)}>
                        Edit {g.name}
                      </button>
                      <ConfirmButton
                        label={`Delete ${g.name}`}
                        confirmLabel={`Really delete ${g.name}`}
                        onConfirm={() => act(() => api.guardrails.deleteGuardrail({ tenant, guardrail: g.id }), `Guardrail ${g.name} deleted.`)}
                      />
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {writable && data && (
        <GuardrailForm
          key={editing?.id ?? "new"}
          replacing={editing}
          taken={data.guardrails.map((g) => g.name)}
          onCancel={() => setEditing(null)}
          onDone={async (text) => {
            setEditing(null);
            setNotice({ kind: "ok", text });
            await reload();
          }}
          onError={(e) => setNotice({ kind: "error", text: errorText(e) })}
        />
      )}
    </>
  );
}

function AttachForm({
  guardrail,
  keys,
  models,
  onDone,
}: {
  guardrail: Guardrail;
  keys: { id: string; name: string }[];
  models: { id: string; name: string }[];
  onDone: (what: () => Promise<unknown>, ok: string) => Promise<void>;
}) {
  const { api, tenant } = useSession();
  const [scope, setScope] = useState("tenant");
  const [target, setTarget] = useState("");
  const options = scope === "key" ? keys : scope === "model" ? models : [];
  const chosen = target || options[0]?.id || "";
  return (
    <div className="toolbar" role="group" aria-label={`Attach ${guardrail.name}`}>
      <select aria-label={`Attach ${guardrail.name} to`} value={scope} onChange={(e) => { setScope(e.target.value); setTarget(""); }}>
        <option value="tenant">whole tenant</option>
        <option value="key">a key</option>
        <option value="model">a model</option>
      </select>
      {scope !== "tenant" && (
        <select aria-label={`${scope === "key" ? "Key" : "Model"} for ${guardrail.name}`} value={chosen} onChange={(e) => setTarget(e.target.value)}>
          {options.map((o) => (
            <option key={o.id} value={o.id}>
              {o.name}
            </option>
          ))}
        </select>
      )}
      <button
        type="button"
        disabled={scope !== "tenant" && !chosen}
        onClick={() => onDone(() => api.guardrails.attachGuardrail({ tenant, guardrail: guardrail.id, scope, target: scope === "tenant" ? "" : chosen }), `${guardrail.name} attached.`)}
      >
        Attach
      </button>
    </div>
  );
}

function GuardrailForm({
  replacing,
  taken,
  onCancel,
  onDone,
  onError,
}: {
  replacing: Guardrail | null;
  taken: string[];
  onCancel: () => void;
  onDone: (text: string) => Promise<void>;
  onError: (e: unknown) => void;
}) {
  const { api, tenant } = useSession();
  const nextName = (n: string) => {
    const base = n.replace(/-v\d+$/, "");
    for (let i = 2; ; i++) if (!taken.includes(`${base}-v${i}`)) return `${base}-v${i}`;
  };
  const [f, setF] = useState({
    name: replacing ? nextName(replacing.name) : "",
    kind: replacing?.kind ?? "keyword",
    action: replacing?.action ?? "block",
    direction: replacing?.direction ?? "input",
    settings: replacing?.settings ?? TEMPLATES.keyword,
  });
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [busy, setBusy] = useState(false);
  return (
    <form
      aria-label={replacing ? `Replace ${replacing.name}` : "Create a guardrail"}
      noValidate
      onSubmit={async (e) => {
        e.preventDefault();
        const errs = checkGuardrail(f);
        setErrors(errs);
        if (Object.keys(errs).length) return;
        setBusy(true);
        try {
          const g = await api.guardrails.createGuardrail({ tenant, ...f, name: f.name.trim() });
          if (replacing) {
            // Guardrails change by replacement: the new one takes over every
            // attachment before the old one goes, so nothing runs unguarded.
            for (const a of replacing.attachments) {
              await api.guardrails.attachGuardrail({ tenant, guardrail: g.id, scope: a.scope, target: a.scope === "tenant" ? "" : a.targetId });
            }
            await api.guardrails.deleteGuardrail({ tenant, guardrail: replacing.id });
            await onDone(`Guardrail ${replacing.name} replaced by ${g.name} (${replacing.attachments.length} attachments moved).`);
          } else {
            await onDone(`Guardrail ${g.name} created. Attach it to the tenant, a key or a model to enforce it.`);
          }
        } catch (err) {
          onError(err);
        } finally {
          setBusy(false);
        }
      }}
    >
      <h2>{replacing ? `Replace ${replacing.name}` : "Create a guardrail"}</h2>
      {replacing && (
        <p className="hint" style={{ flexBasis: "100%" }}>
          Guardrails are not changed in place: this creates a new one, attaches it wherever {replacing.name} is attached, then deletes {replacing.name}.
        </p>
      )}
      <Field label="Name" error={errors.name}>
        <input value={f.name} onChange={(e) => setF({ ...f, name: e.target.value })} />
      </Field>
      <Field label="Kind">
        <select
          value={f.kind}
          onChange={(e) => {
            const kind = e.target.value;
            // A fresh template unless the settings were edited.
            const settings = Object.values(TEMPLATES).includes(f.settings) ? TEMPLATES[kind] : f.settings;
            setF({ ...f, kind, settings, direction: kind === "size" || kind === "model" ? "input" : f.direction });
          }}
        >
          {KINDS.map((k) => (
            <option key={k}>{k}</option>
          ))}
        </select>
      </Field>
      <Field label="Action" error={errors.action}>
        <select value={f.action} onChange={(e) => setF({ ...f, action: e.target.value })}>
          {ACTIONS.map((k) => (
            <option key={k}>{k}</option>
          ))}
        </select>
      </Field>
      <Field label="Direction">
        <select value={f.direction} onChange={(e) => setF({ ...f, direction: e.target.value })}>
          {DIRECTIONS.map((k) => (
            <option key={k}>{k}</option>
          ))}
        </select>
      </Field>
      <Field label="Settings (JSON)" error={errors.settings}>
        <textarea rows={3} value={f.settings} spellCheck={false} onChange={(e) => setF({ ...f, settings: e.target.value })} />
      </Field>
      <button type="submit" disabled={busy}>
        {replacing ? "Replace guardrail" : "Create guardrail"}
      </button>
      {replacing && (
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      )}
    </form>
  );
}
