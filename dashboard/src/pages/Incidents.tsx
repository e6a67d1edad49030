import { useState } from "react";
import { errorText } from "../api";
import { Field } from "../components/Field";
import { Notice, type NoticeState } from "../components/Notice";
import { useLoad } from "../components/useLoad";
import { when } from "../format";
import type { Incident } from "../gen/tollgate/admin/v1/status_pb";
import { useSession } from "../session";

export const IMPACTS = ["none", "minor", "major", "critical"] as const;
export const STATES = ["investigating", "identified", "monitoring", "resolved"] as const;

/** Comma-separated components ("openai, gpt-4o") as a list. */
export function components(s: string): string[] {
  return s
    .split(",")
    .map((c) => c.trim())
    .filter(Boolean);
}

function Update({ incident, onDone }: { incident: Incident; onDone: (n: NoticeState) => Promise<void> }) {
  const { api } = useSession();
  const [state, setState] = useState(incident.state);
  const [message, setMessage] = useState("");
  const [impact, setImpact] = useState(incident.impact);
  return (
    <form
      aria-label={`Update ${incident.title}`}
      className="inline-form"
      onSubmit={async (e) => {
        e.preventDefault();
        try {
          await api.status.updateIncident({ id: incident.id, state, impact, message: message.trim() });
          setMessage("");
          await onDone({ kind: "ok", text: state === "resolved" ? `${incident.title} resolved.` : `${incident.title} updated.` });
        } catch (err) {
          await onDone({ kind: "error", text: errorText(err) });
        }
      }}
    >
      <Field label="State">
        <select value={state} onChange={(e) => setState(e.target.value)}>
          {STATES.map((s) => (
            <option key={s}>{s}</option>
          ))}
        </select>
      </Field>
      <Field label="Impact">
        <select value={impact} onChange={(e) => setImpact(e.target.value)}>
          {IMPACTS.map((s) => (
            <option key={s}>{s}</option>
          ))}
        </select>
      </Field>
      <Field label="New message (empty: keep)">
        <input value={message} onChange={(e) => setMessage(e.target.value)} />
      </Field>
      <button type="submit">Update</button>
    </form>
  );
}

/** Incidents shown on the public status page (operators). */
export default function Incidents() {
  const { api } = useSession();
  const [notice, setNotice] = useState<NoticeState>(null);
  const { data, error, reload } = useLoad(async () => (await api.status.listIncidents({ resolvedWithinDays: 30 })).incidents, [api]);
  const [title, setTitle] = useState("");
  const [message, setMessage] = useState("");
  const [impact, setImpact] = useState("minor");
  const [comps, setComps] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const done = async (n: NoticeState) => {
    setNotice(n);
    await reload();
  };

  return (
    <>
      <Notice notice={notice} />
      <p className="hint">
        Incidents appear on the public <a href="/status">status page</a> next to the availability the control plane computes. Open ones and those resolved in the last 30 days are listed.
      </p>
      {error && <p role="alert" className="notice error">{error}</p>}
      {!data && !error && <p role="status">Loading…</p>}
      {data && data.length === 0 && <p>No incidents.</p>}
      {data?.map((i) => (
        <section key={i.id} className="card" aria-label={i.title}>
          <h2>{i.title}</h2>
          <p>
            <strong>{i.state}</strong> · impact {i.impact}
            {i.components.length > 0 && <> · {i.components.join(", ")}</>} · opened {when(i.createdAtMs)}
            {i.resolvedAtMs ? <> · resolved {when(i.resolvedAtMs)}</> : <> · updated {when(i.updatedAtMs)}</>}
          </p>
          {i.message && <p>{i.message}</p>}
          {!i.resolvedAtMs && <Update incident={i} onDone={done} />}
        </section>
      ))}
      <form
        aria-label="Post an incident"
        noValidate
        onSubmit={async (e) => {
          e.preventDefault();
          const errs: Record<string, string> = {};
          if (!title.trim()) errs.title = "A title is required.";
          setErrors(errs);
          if (Object.keys(errs).length) return;
          try {
            await api.status.createIncident({ title: title.trim(), message: message.trim(), impact, components: components(comps) });
            setTitle("");
            setMessage("");
            setComps("");
            await done({ kind: "ok", text: "Incident posted on the status page." });
          } catch (err) {
            setNotice({ kind: "error", text: errorText(err) });
          }
        }}
      >
        <h2>Post an incident</h2>
        <Field label="Title" error={errors.title}>
          <input value={title} onChange={(e) => setTitle(e.target.value)} />
        </Field>
        <Field label="Message">
          <textarea value={message} onChange={(e) => setMessage(e.target.value)} />
        </Field>
        <Field label="Impact">
          <select value={impact} onChange={(e) => setImpact(e.target.value)}>
            {IMPACTS.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </Field>
        <Field label="Components (comma-separated, e.g. openai, gpt-4o)">
          <input value={comps} onChange={(e) => setComps(e.target.value)} />
        </Field>
        <button type="submit">Post incident</button>
      </form>
    </>
  );
}
