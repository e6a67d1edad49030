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
