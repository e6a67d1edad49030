/** RFC 4180 CSV: fields with a comma, quote or line break are quoted. */
export function toCsv(header: string[], rows: (string | number | bigint | boolean)[][]): string {
  const cell = (v: string | number | bigint | boolean) => {
    const s = String(v);
    // A leading =, +, - or @ would run as a formula in spreadsheets.
    const safe = /^[=+\-@]/.test(s) && !/^-?\d/.test(s) ? `'${s}` : s;
    return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
  };
  return [header, ...rows].map((r) => r.map(cell).join(",")).join("\r\n") + "\r\n";
}
