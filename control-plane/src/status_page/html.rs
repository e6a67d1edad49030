//! The status page as one server-rendered HTML document: inline CSS, no
//! script, no external asset. Every text from the database is escaped.

use std::fmt::Write as _;

use super::report::{Component, StatusReport, WindowStats};

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{:.2}%", v * 100.0))
}

fn ms(v: Option<i64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("≤ {v} ms"))
}

fn utc(ms: i64) -> String {
    // Days since the epoch to a civil date (Howard Hinnant's algorithm).
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn stats_cells(out: &mut String, w: &WindowStats) {
    let _ = write!(
        out,
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        w.attempts,
        pct(w.availability),
        pct(w.error_rate),
        ms(w.latency_p50_ms),
        ms(w.latency_p95_ms),
        ms(w.ttft_p50_ms),
        ms(w.ttft_p95_ms),
    );
}

fn table(out: &mut String, title: &str, rows: &[Component]) {
    let _ = write!(out, "<h2>{}</h2>", escape(title));
    if rows.is_empty() {
        out.push_str("<p class=muted>No traffic in the last day.</p>");
        return;
    }
    out.push_str(
        "<table><thead><tr><th>Component</th><th>State</th><th>Window</th><th>Attempts</th>\
         <th>Availability</th><th>Error rate</th><th>Latency p50</th><th>Latency p95</th>\
         <th>TTFT p50</th><th>TTFT p95</th></tr></thead><tbody>",
    );
    for c in rows {
        let name = match &c.model {
            Some(m) => format!("{} / {}", escape(&c.provider), escape(m)),
            None => escape(&c.provider),
        };
        let _ = write!(
            out,
            "<tr><td rowspan=2>{name}</td><td rowspan=2 class={s}>{s}</td><td>1 hour</td>",
            s = c.state
        );
        stats_cells(out, &c.hour);
        out.push_str("</tr><tr><td>1 day</td>");
        stats_cells(out, &c.day);
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

/// Renders the report.
pub fn render(r: &StatusReport) -> String {
    let mut out = String::with_capacity(8192);
    out.push_str(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <title>Tollgate status</title><style>\
         body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1b1f24}\
         table{border-collapse:collapse;width:100%;font-size:.9rem}\
         th,td{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:left}\
         .operational{color:#1a7f37}.degraded{color:#9a6700}.outage{color:#cf222e}\
         .banner{padding:1rem;border-radius:.4rem;font-size:1.2rem;margin-bottom:1rem;background:#f6f8fa}\
         .muted{color:#57606a}.incident{border-left:4px solid #9a6700;padding:.25rem 1rem;margin:.75rem 0}\
         </style></head><body><h1>Tollgate status</h1>",
    );
    let headline = match r.overall {
        "outage" => "Major outage",
        "degraded" => "Degraded performance",
        _ => "All systems operational",
    };
    let _ = write!(
        out,
        "<div class=\"banner {o}\" id=overall data-state={o}>{headline}</div>",
        o = r.overall
    );
    out.push_str("<h2>Incidents</h2>");
    if r.incidents.is_empty() {
        out.push_str("<p class=muted>No incidents in the last 7 days.</p>");
    }
    for i in &r.incidents {
        let when = match i.resolved_at_ms {
            Some(t) => format!("resolved {}", utc(t)),
            None => format!("since {}", utc(i.created_at_ms)),
        };
        let _ = write!(
            out,
            "<div class=incident><h3>{}</h3><p><strong>{}</strong> · impact {} · {}{}</p><p>{}</p></div>",
            escape(&i.title),
            escape(&i.state),
            escape(&i.impact),
            escape(&when),
            if i.components.is_empty() {
                String::new()
            } else {
                format!(" · {}", escape(&i.components.join(", ")))
            },
            escape(&i.message),
        );
    }
    table(&mut out, "Providers", &r.providers);
    table(&mut out, "Models", &r.models);
    let _ = write!(
        out,
        "<p class=muted>Upstream attempts through the gateway, all tenants together; availability \
         counts provider failures (no answer, 5xx, 429); latency percentiles are bucket upper \
         bounds. Generated {}. Machine-readable: <a href=\"/status.json\">/status.json</a>.</p>\
         </body></html>",
        utc(r.generated_at_ms)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_dates() {
        assert_eq!(escape("<b>\"x\"&'"), "&lt;b&gt;&quot;x&quot;&amp;&#39;");
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_795_000_000_000), "2026-11-18 11:06 UTC");
    }
}
