//! Process counters from `/proc`: CPU time (utime + stime) and resident
//! memory of the gateway and the mock, read by the benchmark around each
//! measurement window.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context;

/// Clock ticks per second of `/proc/<pid>/stat` times.
fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds a process has used so far (all its threads).
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let ticks = parse_stat_ticks(&text).with_context(|| format!("parse {path}"))?;
    Ok(ticks as f64 / clk_tck())
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The
/// command name (field 2) may hold spaces and parentheses, so fields are
/// counted from the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // After ")" come field 3 (state) … ; utime is field 14, so index 11.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident and peak resident memory in KiB.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
}

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    parse_status_memory(&text).with_context(|| format!("no VmRSS in {path}"))
}

pub fn parse_status_memory(status: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_rss_kib: field("VmHWM:").unwrap_or(0),
    })
}

/// The soft limit on open files of this process (children inherit it).
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string(Path::new("/proc/self/limits")).ok()?;
    parse_open_files_limit(&text)
}

pub fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// A CPU reading of several processes, to subtract from a later one.
#[derive(Debug, Clone)]
pub struct CpuMark {
    at: std::time::Instant,
    seconds: Vec<f64>,
}

impl CpuMark {
    pub fn take(pids: &[u32]) -> anyhow::Result<CpuMark> {
        Ok(CpuMark {
            at: std::time::Instant::now(),
            seconds: pids
                .iter()
                .map(|p| cpu_seconds(*p))
                .collect::<anyhow::Result<_>>()?,
        })
    }

    /// CPU seconds each process used since `earlier`, and the wall time.
    pub fn since(&self, earlier: &CpuMark) -> (Vec<f64>, f64) {
        let used = self
            .seconds
            .iter()
            .zip(&earlier.seconds)
            .map(|(now, then)| (now - then).max(0.0))
            .collect();
        (used, self.at.duration_since(earlier.at).as_secs_f64())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_are_utime_plus_stime_even_with_odd_names() {
        let stat = "4242 (tollgate (dp) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    731 269 0 0 20 0 5 0 123456 1000000 2500 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(1000));
    }

    #[test]
    fn status_memory_reads_rss_and_peak() {
        let status = "Name:\ttollgate-dp\nVmHWM:\t   52000 kB\nVmRSS:\t   48128 kB\nThreads:\t7\n";
        let m = parse_status_memory(status).unwrap();
        assert_eq!(m.rss_kib, 48128);
        assert_eq!(m.peak_rss_kib, 52000);
        assert!(parse_status_memory("Name: x\n").is_none());
    }

    #[test]
    fn open_files_limit_reads_soft_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            65536                65536                files\n";
        assert_eq!(parse_open_files_limit(limits), Some(65536));
    }

    #[test]
    fn own_process_counters_are_readable() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(memory(pid).unwrap().rss_kib > 0);
        assert!(open_files_limit().unwrap() > 0);
    }
}
