// Money is integer micro-dollars end to end; only formatting divides.
export function usd(micros: bigint | number): string {
  const m = BigInt(micros);
  const neg = m < 0n;
  const abs = neg ? -m : m;
  const dollars = abs / 1_000_000n;
  const frac = (abs % 1_000_000n).toString().padStart(6, "0");
  return `${neg ? "-" : ""}$${dollars.toLocaleString("en-US")}.${frac}`;
}

export function when(ms: bigint | number): string {
  const n = Number(ms);
  if (!n) return "—";
  return new Date(n).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

export function num(v: bigint | number): string {
  return Number(v).toLocaleString("en-US");
}

/**
 * Parses a dollar amount typed by a person ("12", "0.50", "1,000.25") into
 * micro-dollars exactly (no floats). Returns an error message instead when
 * the text is not an amount with at most six decimals.
 */
export function parseUsd(text: string, { allowNegative = false } = {}): bigint | string {
  const t = text.trim().replace(/^\$/, "").replace(/,/g, "");
  const m = /^(-)?(\d+)(?:\.(\d{0,6}))?$/.exec(t) ?? /^(-)?()\.(\d{1,6})$/.exec(t);
  if (!m) return "Enter an amount in dollars, like 25 or 0.50 (at most 6 decimals).";
  if (m[1] && !allowNegative) return "The amount must not be negative.";
  const micros = BigInt(m[2] || "0") * 1_000_000n + BigInt((m[3] ?? "").padEnd(6, "0") || "0");
  return m[1] ? -micros : micros;
}

/** Basis points as a percentage: 12500 → "125%". */
export function bps(v: number): string {
  return `${(v / 100).toFixed(v % 100 ? 2 : 0)}%`;
}
