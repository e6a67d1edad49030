/**
 * A small stacked bar chart in plain SVG (no chart library): one bar per
 * point, one stacked segment per series. Scales to its container's width;
 * every bar has a tooltip (<title>) and the numbers are also in a table for
 * screen readers.
 */
export type Series = { label: string; color: string };
export type Point = { label: string; values: number[] };

const W = 640;
const H = 220;
const PAD = { top: 12, right: 8, bottom: 34, left: 76 };

/** A "nice" upper bound for the axis: 1, 2 or 5 × 10ⁿ at or above `max`. */
export function niceMax(max: number): number {
  if (!(max > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

export function BarChart({
  title,
  series,
  points,
  format = (n) => n.toLocaleString("en-US"),
  integer = false,
}: {
  title: string;
  series: Series[];
  points: Point[];
  format?: (n: number) => string;
  /** Whole numbers (calls, tokens): the axis never shows a fraction. */
  integer?: boolean;
}) {
  if (points.length === 0) {
    return (
      <figure className="chart">
        <figcaption>{title}</figcaption>
        <p className="hint">No data in this window.</p>
      </figure>
    );
  }
  const totals = points.map((p) => p.values.reduce((a, v) => a + Math.max(0, v), 0));
  const top = Math.max(integer ? 2 : 0, niceMax(Math.max(...totals)));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = plotW / points.length;
  const barW = Math.max(1, Math.min(48, slot * 0.7));
  const y = (v: number) => PAD.top + plotH - (v / top) * plotH;
  // Label every n-th bar so labels never overlap.
  const every = Math.max(1, Math.ceil(points.length / 10));
  return (
    <figure className="chart">
      <figcaption>{title}</figcaption>
      {series.length > 1 && (
        <ul className="legend" aria-hidden="true">
          {series.map((s) => (
            <li key={s.label}>
              <span className="swatch" style={{ background: s.color }} /> {s.label}
            </li>
          ))}
        </ul>
      )}
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`${title} (bar chart; the numbers follow as a table)`} preserveAspectRatio="xMidYMid meet">
        {[0, 0.5, 1].map((f) => (
          <g key={f}>
            <line x1={PAD.left} x2={W - PAD.right} y1={y(top * f)} y2={y(top * f)} className="grid" />
            <text x={PAD.left - 6} y={y(top * f) + 4} textAnchor="end" className="axis">
              {format(top * f)}
            </text>
          </g>
        ))}
        {points.map((p, i) => {
          const x = PAD.left + slot * i + (slot - barW) / 2;
          let base = 0;
          return (
            <g key={p.label} data-testid="bar">
              <title>{`${p.label}: ${series.map((s, j) => `${s.label} ${format(p.values[j] ?? 0)}`).join(", ")}`}</title>
              {series.map((s, j) => {
                const v = Math.max(0, p.values[j] ?? 0);
                const y0 = y(base);
                base += v;
                const h = y0 - y(base);
                return h > 0 ? <rect key={s.label} x={x} width={barW} y={y(base)} height={h} fill={s.color} /> : null;
              })}
              {i % every === 0 && (
                <text x={x + barW / 2} y={H - PAD.bottom + 16} textAnchor="middle" className="axis">
                  {p.label}
                </text>
              )}
            </g>
          );
        })}
      </svg>
      <table className="sr-only">
        <caption>{title}</caption>
        <thead>
          <tr>
            <th scope="col">Bucket</th>
            {series.map((s) => (
              <th key={s.label} scope="col">
                {s.label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {points.map((p) => (
            <tr key={p.label}>
              <th scope="row">{p.label}</th>
              {series.map((s, j) => (
                <td key={s.label}>{format(p.values[j] ?? 0)}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}
