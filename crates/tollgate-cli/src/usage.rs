//! `tollgate usage query|requests|export`: aggregates grouped by time,
//! model, key and provider; the request log; CSV/JSON export of the log.

use std::io::Write;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use tollgate_core::money::format_usd;
use tollgate_proto::admin::v1 as pb;

use crate::client::{status_error, Admin};
use crate::output::{datetime, table};

#[derive(Subcommand, Debug)]
pub enum UsageCmd {
    /// Calls, tokens per bucket, cost and latency grouped by hour/day,
    /// model, key and provider (from the hourly rollups).
    Query(QueryArgs),
    /// The request log: single calls, newest first.
    Requests(RequestsArgs),
    /// Every call of a window as CSV or JSON on stdout (progress on stderr).
    Export(ExportArgs),
}

/// Time window shared by the usage subcommands.
#[derive(Args, Debug, Clone, Default)]
pub struct Window {
    /// Start: 2026-11-23, 2026-11-23T10:00[:00][Z] (UTC) or epoch ms.
    #[arg(long, conflicts_with = "since")]
    pub from: Option<String>,
    /// End (exclusive), same formats as --from (default: now).
    #[arg(long)]
    pub to: Option<String>,
    /// Relative start instead of --from: e.g. 30m, 24h, 7d.
    #[arg(long)]
    pub since: Option<String>,
}

impl Window {
    /// `(since_ms, until_ms)`, 0 meaning unbounded / now.
    fn resolve(&self) -> anyhow::Result<(i64, i64)> {
        let until = self.to.as_deref().map(parse_time).transpose()?.unwrap_or(0);
        let since = match (&self.from, &self.since) {
            (Some(f), _) => parse_time(f)?,
            (None, Some(w)) => tollgate_core::time::now_ms() - crate::admin::parse_window(w)?,
            (None, None) => 0,
        };
        if until != 0 && since > until {
            bail!("the window starts after it ends (--from/--since is after --to)");
        }
        Ok((since, until))
    }
}

/// Filters shared by `query` and `requests`.
#[derive(Args, Debug, Clone, Default)]
pub struct Filters {
    /// Only this public model name.
    #[arg(long)]
    pub model: Option<String>,
    /// Only this caller key (id or name).
    #[arg(long)]
    pub key: Option<String>,
    /// Only this provider (id or name).
    #[arg(long)]
    pub provider: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dim {
    Hour,
    Day,
    Model,
    Key,
    Provider,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    #[arg(long)]
    pub tenant: String,
    /// Comma-separated: hour or day, model, key, provider (default: day,model).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "day,model")]
    pub group_by: Vec<Dim>,
    #[command(flatten)]
    pub window: Window,
    #[command(flatten)]
    pub filters: Filters,
    /// Day boundaries for --group-by day, as a whole-hour UTC offset: +02:00, -5.
    #[arg(long, default_value = "0", allow_hyphen_values = true)]
    pub tz_offset: String,
}

#[derive(Args, Debug)]
pub struct RequestsArgs {
    #[arg(long)]
    pub tenant: String,
    #[command(flatten)]
    pub window: Window,
    #[command(flatten)]
    pub filters: Filters,
    /// Only calls answered with this HTTP status.
    #[arg(long)]
    pub status: Option<u32>,
    /// Only failed calls (status >= 400).
    #[arg(long)]
    pub errors: bool,
    /// Only calls with this error code (e.g. rate_limited, upstream_error).
    #[arg(long)]
    pub error_code: Option<String>,
    /// How many calls to show.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[arg(long)]
    pub tenant: String,
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    #[command(flatten)]
    pub window: Window,
    #[command(flatten)]
    pub filters: Filters,
}

pub async fn run(admin: &mut Admin, cmd: UsageCmd, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        UsageCmd::Query(a) => query(admin, a, as_json).await,
        UsageCmd::Requests(a) => requests(admin, a, as_json).await,
        UsageCmd::Export(a) => export(admin, a).await,
    }
}

/// Whole-hour UTC offset in minutes: "+02:00", "-5", "0", "+0530" is rejected.
fn parse_tz_offset(s: &str) -> anyhow::Result<i32> {
    let bad =
        || anyhow::anyhow!("bad --tz-offset {s:?}: use a whole-hour offset like +02:00 or -5");
    let (sign, rest) = match s.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, s.strip_prefix('+').unwrap_or(s)),
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None => (rest, "0"),
    };
    let h: i32 = h.parse().map_err(|_| bad())?;
    let m: i32 = m.parse().map_err(|_| bad())?;
    if m != 0 || !(0..=14).contains(&h) {
        return Err(bad());
    }
    Ok(sign * h * 60)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Epoch ms of `2026-11-23`, `2026-11-23T10:00[:00][Z]` / with a space
/// (UTC), or a plain number of epoch ms.
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    let bad = || {
        anyhow::anyhow!("bad time {s:?}: use 2026-11-23, 2026-11-23T10:00:00Z (UTC) or epoch ms")
    };
    let s = s.trim();
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
        return s.parse().map_err(|_| bad());
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let num =
        |p: Option<&str>| -> anyhow::Result<i64> { p.and_then(|p| p.parse().ok()).ok_or_else(bad) };
    let mut dp = date.split('-');
    let (y, mo, d) = (num(dp.next())?, num(dp.next())?, num(dp.next())?);
    if dp.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut secs = 0;
    if let Some(t) = time {
        let mut tp = t.split(':');
        let (h, mi) = (num(tp.next())?, num(tp.next())?);
        let sec = match tp.next() {
            Some(x) => num(Some(x))?,
            None => 0,
        };
        if tp.next().is_some() || h > 23 || mi > 59 || sec > 59 {
            return Err(bad());
        }
        secs = h * 3600 + mi * 60 + sec;
    }
    Ok((days_from_civil(y, mo, d) * 86_400 + secs) * 1000)
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

fn ms_avg(sum: i64, n: i64) -> String {
    if n <= 0 {
        "-".into()
    } else {
        format!("{} ms", sum / n)
    }
}

async fn query(admin: &mut Admin, a: QueryArgs, as_json: bool) -> anyhow::Result<()> {
    let (since_ms, until_ms) = a.window.resolve()?;
    let tz = parse_tz_offset(&a.tz_offset)?;
    let group_by: Vec<i32> = a
        .group_by
        .iter()
        .map(|d| match d {
            Dim::Hour => pb::UsageDimension::Hour,
            Dim::Day => pb::UsageDimension::Day,
            Dim::Model => pb::UsageDimension::Model,
            Dim::Key => pb::UsageDimension::Key,
            Dim::Provider => pb::UsageDimension::Provider,
        } as i32)
        .collect();
    let mut req = pb::QueryUsageRequest {
        tenant: a.tenant,
        since_ms,
        until_ms,
        group_by,
        model: opt(&a.filters.model),
        key_id: opt(&a.filters.key),
        provider_id: opt(&a.filters.provider),
        tz_offset_minutes: tz,
        page_size: 1000,
        page_token: String::new(),
    };
    let mut buckets = Vec::new();
    let (window_since, window_until) = loop {
        let page = admin
            .usage_query
            .query_usage(req.clone())
            .await
            .map_err(status_error)?
            .into_inner();
        buckets.extend(page.buckets);
        if page.next_page_token.is_empty() {
            break (page.since_ms, page.until_ms);
        }
        req.page_token = page.next_page_token;
    };
    if as_json {
        let rows: Vec<_> = buckets
            .iter()
            .map(|b| {
                json!({"bucket_start_ms": b.bucket_start_ms, "model": b.model, "key_id": b.key_id,
                "provider_id": b.provider_id, "calls": b.calls, "errors": b.errors,
                "prompt_tokens": b.prompt_tokens, "completion_tokens": b.completion_tokens,
                "cache_read_tokens": b.cache_read_tokens, "cache_write_tokens": b.cache_write_tokens,
                "reasoning_tokens": b.reasoning_tokens, "cost_micros": b.cost_micros,
                "latency_ms_sum": b.latency_ms_sum, "ttft_ms_sum": b.ttft_ms_sum,
                "ttft_count": b.ttft_count})
            })
            .collect();
        println!(
            "{}",
            json!({"since_ms": window_since, "until_ms": window_until, "buckets": rows})
        );
        return Ok(());
    }
    let has = |d: Dim| a.group_by.contains(&d);
    let time_label = if tz == 0 {
        "UTC".to_owned()
    } else {
        format!("UTC{:+}", tz / 60)
    };
    let mut header: Vec<String> = Vec::new();
    if has(Dim::Hour) {
        header.push(format!("HOUR ({time_label})"));
    } else if has(Dim::Day) {
        header.push(format!("DAY ({time_label})"));
    }
    for (d, h) in [
        (Dim::Model, "MODEL"),
        (Dim::Key, "KEY"),
        (Dim::Provider, "PROVIDER"),
    ] {
        if has(d) {
            header.push(h.into());
        }
    }
    header.extend(
        [
            "CALLS",
            "ERRORS",
            "PROMPT",
            "COMPLETION",
            "CACHE READ",
            "CACHE WRITE",
            "REASONING",
            "COST",
            "AVG LATENCY",
            "AVG TTFT",
        ]
        .map(String::from),
    );
    let local = |ms: i64| datetime(ms + i64::from(tz) * 60_000);
    let rows: Vec<Vec<String>> = buckets
        .iter()
        .map(|b| {
            let mut row = Vec::new();
            if has(Dim::Hour) {
                row.push(local(b.bucket_start_ms)[..16].to_owned());
            } else if has(Dim::Day) {
                row.push(local(b.bucket_start_ms)[..10].to_owned());
            }
            for (d, v) in [
                (Dim::Model, &b.model),
                (Dim::Key, &b.key_id),
                (Dim::Provider, &b.provider_id),
            ] {
                if has(d) {
                    row.push(v.clone());
                }
            }
            row.extend([
                b.calls.to_string(),
                b.errors.to_string(),
                b.prompt_tokens.to_string(),
                b.completion_tokens.to_string(),
                b.cache_read_tokens.to_string(),
                b.cache_write_tokens.to_string(),
                b.reasoning_tokens.to_string(),
                format_usd(b.cost_micros),
                ms_avg(b.latency_ms_sum, b.calls),
                ms_avg(b.ttft_ms_sum, b.ttft_count),
            ]);
            row
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    table(&header, &rows);
    let calls: i64 = buckets.iter().map(|b| b.calls).sum();
    let cost: i64 = buckets.iter().map(|b| b.cost_micros).sum();
    let from = if window_since == 0 {
        "the beginning".to_owned()
    } else {
        format!("{} UTC", datetime(window_since))
    };
    println!(
        "\n{calls} calls, {} from {from} to {} UTC (whole hours)",
        format_usd(cost),
        datetime(window_until),
    );
    Ok(())
}

fn search_request(
    tenant: String,
    w: &Window,
    f: &Filters,
) -> anyhow::Result<pb::SearchRequestsRequest> {
    let (since_ms, until_ms) = w.resolve()?;
    Ok(pb::SearchRequestsRequest {
        tenant,
        since_ms,
        until_ms,
        model: opt(&f.model),
        key_id: opt(&f.key),
        provider_id: opt(&f.provider),
        ..Default::default()
    })
}

fn entry_json(r: &pb::RequestLogEntry) -> serde_json::Value {
    let attempts: Vec<_> = r
        .attempts
        .iter()
        .map(|a| {
            json!({"provider_id": a.provider_id, "upstream_model": a.upstream_model,
            "status_code": a.status_code, "latency_ms": a.latency_ms, "error_code": a.error_code})
        })
        .collect();
    json!({"id": r.id, "request_id": r.request_id, "started_at_ms": r.started_at_ms,
        "key_id": r.key_id, "model": r.model, "provider_id": r.provider_id,
        "upstream_model": r.upstream_model, "api": r.api, "stream": r.stream,
        "status_code": r.status_code, "error_code": r.error_code, "latency_ms": r.latency_ms,
        "ttft_ms": if r.ttft_ms >= 0 { json!(r.ttft_ms) } else { json!(null) },
        "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
        "cache_read_tokens": r.cache_read_tokens, "cache_write_tokens": r.cache_write_tokens,
        "reasoning_tokens": r.reasoning_tokens, "cost_micros": r.cost_micros,
        "node_id": r.node_id, "attempts": attempts})
}

async fn requests(admin: &mut Admin, a: RequestsArgs, as_json: bool) -> anyhow::Result<()> {
    let mut req = search_request(a.tenant, &a.window, &a.filters)?;
    req.status_code = a.status.unwrap_or(0);
    req.errors_only = a.errors;
    req.error_code = opt(&a.error_code);
    let mut entries = Vec::new();
    while entries.len() < a.limit as usize {
        req.page_size = (a.limit - entries.len() as u32).min(1000);
        let page = admin
            .usage_query
            .search_requests(req.clone())
            .await
            .map_err(status_error)?
            .into_inner();
        entries.extend(page.requests);
        if page.next_page_token.is_empty() {
            break;
        }
        req.page_token = page.next_page_token;
    }
    if as_json {
        let v: Vec<_> = entries.iter().map(entry_json).collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|r| {
            vec![
                datetime(r.started_at_ms),
                r.request_id.clone(),
                r.model.clone(),
                r.key_id.clone(),
                r.status_code.to_string(),
                if r.error_code.is_empty() {
                    "-".into()
                } else {
                    r.error_code.clone()
                },
                format!("{}+{}", r.prompt_tokens, r.completion_tokens),
                format_usd(r.cost_micros),
                format!("{} ms", r.latency_ms),
                if r.ttft_ms >= 0 {
                    format!("{} ms", r.ttft_ms)
                } else {
                    "-".into()
                },
                r.attempts.len().to_string(),
            ]
        })
        .collect();
    table(
        &[
            "TIME (UTC)",
            "REQUEST",
            "MODEL",
            "KEY",
            "STATUS",
            "ERROR",
            "TOKENS IN+OUT",
            "COST",
            "LATENCY",
            "TTFT",
            "ATTEMPTS",
        ],
        &rows,
    );
    Ok(())
}

const CSV_HEADER: &[&str] = &[
    "started_at",
    "started_at_ms",
    "request_id",
    "id",
    "key_id",
    "model",
    "provider_id",
    "upstream_model",
    "api",
    "stream",
    "status_code",
    "error_code",
    "latency_ms",
    "ttft_ms",
    "prompt_tokens",
    "completion_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_micros",
    "attempts",
    "node_id",
];

/// RFC 4180: quote a field holding a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv_row(r: &pb::RequestLogEntry) -> String {
    let started = format!("{}Z", datetime(r.started_at_ms).replace(' ', "T"));
    let fields = [
        started,
        r.started_at_ms.to_string(),
        r.request_id.clone(),
        r.id.clone(),
        r.key_id.clone(),
        r.model.clone(),
        r.provider_id.clone(),
        r.upstream_model.clone(),
        r.api.clone(),
        r.stream.to_string(),
        r.status_code.to_string(),
        r.error_code.clone(),
        r.latency_ms.to_string(),
        if r.ttft_ms >= 0 {
            r.ttft_ms.to_string()
        } else {
            String::new()
        },
        r.prompt_tokens.to_string(),
        r.completion_tokens.to_string(),
        r.cache_read_tokens.to_string(),
        r.cache_write_tokens.to_string(),
        r.reasoning_tokens.to_string(),
        r.cost_micros.to_string(),
        r.attempts.len().to_string(),
        r.node_id.clone(),
    ];
    let cells: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    cells.join(",")
}

async fn export(admin: &mut Admin, a: ExportArgs) -> anyhow::Result<()> {
    let mut req = search_request(a.tenant, &a.window, &a.filters)?;
    // A fixed end, so calls arriving during the export do not shift pages.
    if req.until_ms == 0 {
        req.until_ms = tollgate_core::time::now_ms() + 1;
    }
    req.page_size = 1000;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let write_err = |e: std::io::Error| anyhow::anyhow!("writing the export: {e}");
    match a.format {
        ExportFormat::Csv => writeln!(out, "{}", CSV_HEADER.join(",")).map_err(write_err)?,
        ExportFormat::Json => write!(out, "[").map_err(write_err)?,
    }
    let mut n: u64 = 0;
    loop {
        let page = admin
            .usage_query
            .search_requests(req.clone())
            .await
            .map_err(status_error)
            .context("fetching the request log")?
            .into_inner();
        for r in &page.requests {
            match a.format {
                ExportFormat::Csv => writeln!(out, "{}", csv_row(r)),
                ExportFormat::Json => {
                    write!(out, "{}\n{}", if n == 0 { "" } else { "," }, entry_json(r))
                }
            }
            .map_err(write_err)?;
            n += 1;
        }
        eprint!("\rexported {n} calls");
        if page.next_page_token.is_empty() {
            break;
        }
        req.page_token = page.next_page_token;
    }
    if a.format == ExportFormat::Json {
        writeln!(out, "\n]").map_err(write_err)?;
    }
    out.flush().map_err(write_err)?;
    eprintln!("\rexported {n} calls: done");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_utc() {
        assert_eq!(parse_time("1970-01-01").unwrap(), 0);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("2023-11-14 22:13:20").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(parse_time("2000-02-29T00:00").unwrap(), 951_782_400_000);
        assert_eq!(parse_time("1700000000000").unwrap(), 1_700_000_000_000);
        for bad in ["", "2023-13-01", "2023-11-14T25:00", "yesterday", "2023-11"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tz_offsets_are_whole_hours() {
        assert_eq!(parse_tz_offset("0").unwrap(), 0);
        assert_eq!(parse_tz_offset("+02:00").unwrap(), 120);
        assert_eq!(parse_tz_offset("-5").unwrap(), -300);
        assert!(parse_tz_offset("+05:30").is_err());
        assert!(parse_tz_offset("15").is_err());
    }

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        let row = csv_row(&pb::RequestLogEntry {
            started_at_ms: 1_700_000_000_000,
            request_id: "r1".into(),
            status_code: 429,
            error_code: "rate_limited".into(),
            ttft_ms: -1,
            ..Default::default()
        });
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells.len(), CSV_HEADER.len());
        assert_eq!(cells[0], "2023-11-14T22:13:20Z");
        assert_eq!(cells[10], "429");
        assert_eq!(cells[13], "");
    }
}
