//! Process figures read from `/proc` at scrape time, under the names every Prometheus client library uses
//! (`process_resident_memory_bytes`, `process_cpu_seconds_total`, ...), so stock dashboards and alert rules
//! work unchanged. On a system without `/proc` the section is simply absent.

use std::fmt::Write as _;

/// Clock ticks per second of `/proc/<pid>/stat` times: fixed at 100 on Linux (USER_HZ), as Prometheus's own
/// procfs reader assumes.
const USER_HZ: f64 = 100.0;
/// Page size used to convert `statm` pages when `status` has no `VmRSS` line.
const PAGE_SIZE: f64 = 4096.0;

/// What `/proc` says about this process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident set size.
    pub resident_bytes: f64,
    /// Virtual memory size.
    pub virtual_bytes: f64,
    /// User plus system CPU time.
    pub cpu_seconds: f64,
    /// Open file descriptors.
    pub open_fds: f64,
    /// The soft limit on descriptors, when known.
    pub max_fds: Option<f64>,
    /// Unix time the process started, when known.
    pub start_time_seconds: Option<f64>,
    /// OS threads.
    pub threads: f64,
}

/// Reads the figures of this process; `None` without `/proc`.
pub fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut stats = parse_stat(&stat)?;
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(rss) = parse_status_rss(&status)
    {
        stats.resident_bytes = rss;
    }
    stats.open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as f64).unwrap_or(0.0);
    stats.max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|l| parse_max_fds(&l));
    if let (Some(ticks), Ok(proc_stat)) = (stats.start_time_seconds, std::fs::read_to_string("/proc/stat")) {
        stats.start_time_seconds = parse_boot_time(&proc_stat).map(|boot| boot + ticks);
    } else {
        stats.start_time_seconds = None;
    }
    Some(stats)
}

/// Fields of `/proc/<pid>/stat` (see proc(5)); the command name in parentheses may hold spaces, so fields are
/// counted after its closing parenthesis. `start_time_seconds` holds seconds after boot until [`read`] adds the
/// boot time.
pub fn parse_stat(stat: &str) -> Option<ProcessStats> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of proc(5), i.e. index 0 here; utime 14 -> 11, stime 15 -> 12,
    // num_threads 20 -> 17, starttime 22 -> 19, vsize 23 -> 20, rss 24 -> 21.
    let num = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    Some(ProcessStats {
        cpu_seconds: (num(11)? + num(12)?) / USER_HZ,
        threads: num(17)?,
        start_time_seconds: Some(num(19)? / USER_HZ),
        virtual_bytes: num(20)?,
        resident_bytes: num(21)? * PAGE_SIZE,
        ..Default::default()
    })
}

/// `VmRSS:   12345 kB` of `/proc/<pid>/status`, in bytes.
pub fn parse_status_rss(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// The soft limit of `Max open files` in `/proc/<pid>/limits`.
pub fn parse_max_fds(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// `btime` of `/proc/stat`: the Unix time the system booted.
pub fn parse_boot_time(proc_stat: &str) -> Option<f64> {
    proc_stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// Appends the process section to a `/metrics` body.
pub fn render(out: &mut String) {
    if let Some(stats) = read() {
        render_stats(out, &stats);
    }
}

/// Writes `stats` as exposition text.
pub fn render_stats(out: &mut String, stats: &ProcessStats) {
    let mut family = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    };
    family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", stats.resident_bytes);
    family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", stats.virtual_bytes);
    family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        stats.cpu_seconds,
    );
    family("process_open_fds", "gauge", "Number of open file descriptors.", stats.open_fds);
    family("process_threads", "gauge", "Number of OS threads in the process.", stats.threads);
    if let Some(max) = stats.max_fds {
        family("process_max_fds", "gauge", "Maximum number of open file descriptors.", max);
    }
    if let Some(start) = stats.start_time_seconds {
        family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", start);
    }
}

/// The health job's view of this process, from `/proc`.
pub struct ProcProbe;

impl mcbot_schedules::jobs::ProcessProbe for ProcProbe {
    fn sample(&self) -> (Option<u64>, Option<u64>) {
        match read() {
            Some(s) => (Some(s.resident_bytes as u64), Some(s.open_fds as u64)),
            None => (None, None),
        }
    }
}
