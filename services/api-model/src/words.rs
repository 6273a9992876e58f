//! Durations, sizes and schedules in words for people, one spelling for every place that
//! shows them: in prose (the event log's summaries, notifications) and compact (the CLI's
//! tables), each written once here.

use fleet_events::schedule::Schedule;

/// A size for people: `512 B`, `1.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration in milliseconds, in prose: `250 ms`, `23.5 s`, `2 min 5 s`, `1 h 30 min`,
/// `2 d 3 h`.
pub fn duration(ms: u64) -> String {
    const S: u64 = 1000;
    const MIN: u64 = 60 * S;
    const H: u64 = 60 * MIN;
    const D: u64 = 24 * H;
    let two = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big} {big_unit}")
        } else {
            format!("{big} {big_unit} {small} {small_unit}")
        }
    };
    match ms {
        ms if ms < S => format!("{ms} ms"),
        ms if ms < MIN && ms % S == 0 => format!("{} s", ms / S),
        ms if ms < MIN => format!("{:.1} s", ms as f64 / S as f64),
        ms if ms < H => two(ms / MIN, "min", ms % MIN / S, "s"),
        ms if ms < D => two(ms / H, "h", ms % H / MIN, "min"),
        ms => two(ms / D, "d", ms % D / H, "h"),
    }
}

/// A duration in milliseconds, compact for tables: `850ms`, `12.3s`, `4m05s`, `2h03m`.
pub fn duration_compact(ms: u64) -> String {
    let secs = ms / 1000;
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{}.{}s", secs, (ms % 1000) / 100),
        60_000..3_600_000 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

/// Seconds as a compact span in the largest unit that divides them: `90s`, `15m`, `6h`,
/// `2d`.
pub fn span_compact(secs: u64) -> String {
    match secs {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A schedule: `cron 0 2 * * * (Europe/Berlin)`, or `every ` and its interval, in prose
/// (`every 6 h`) or compact (`every 6h`).
pub fn schedule(schedule: &Schedule, compact: bool) -> String {
    match schedule {
        Schedule::Cron { expr, timezone } => format!("cron {expr} ({timezone})"),
        Schedule::Interval { every_secs } if compact => {
            format!("every {}", span_compact(*every_secs))
        }
        Schedule::Interval { every_secs } => {
            format!("every {}", duration(every_secs.saturating_mul(1000)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn durations_read_as_prose_or_compact() {
        assert_eq!(duration(0), "0 ms");
        assert_eq!(duration(23_456), "23.5 s");
        assert_eq!(duration(30_000), "30 s");
        assert_eq!(duration(125_000), "2 min 5 s");
        assert_eq!(duration(3_600_000), "1 h");
        assert_eq!(duration(5_400_000), "1 h 30 min");
        assert_eq!(duration(6 * 3_600_000), "6 h");
        assert_eq!(duration(51 * 3_600_000), "2 d 3 h");
        assert_eq!(duration_compact(850), "850ms");
        assert_eq!(duration_compact(12_345), "12.3s");
        assert_eq!(duration_compact(245_000), "4m05s");
        assert_eq!(duration_compact(7_380_000), "2h03m");
        assert_eq!(span_compact(90), "90s");
        assert_eq!(span_compact(900), "15m");
        assert_eq!(span_compact(21_600), "6h");
        assert_eq!(span_compact(172_800), "2d");
    }

    #[test]
    fn schedules_read_the_same_in_prose_and_compact_but_for_the_interval() {
        let cron = Schedule::Cron {
            expr: "0 2 * * *".into(),
            timezone: "Europe/Berlin".into(),
        };
        assert_eq!(schedule(&cron, false), "cron 0 2 * * * (Europe/Berlin)");
        assert_eq!(schedule(&cron, true), "cron 0 2 * * * (Europe/Berlin)");
        let every = Schedule::Interval { every_secs: 21_600 };
        assert_eq!(schedule(&every, false), "every 6 h");
        assert_eq!(schedule(&every, true), "every 6h");
    }
}
