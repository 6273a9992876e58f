//! What the simulator measures from outside: CPU seconds and RSS of a process from
//! `/proc` (sampled every second), counters and histogram quantiles of the control plane's
//! `/metrics`, percentiles of latencies.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Proc {
    /// User plus system CPU time so far.
    pub cpu_secs: f64,
    pub rss_bytes: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `None` once the process is gone.
pub fn read(pid: u32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis,
    // where field 3 (state) is the first; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0);
    Some(Proc {
        cpu_secs: ticks as f64 / per_sec,
        rss_bytes: rss_kib * 1024,
    })
}

/// The child of `parent` whose command name is `name`.
pub fn child_named(parent: u32, name: &str) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some((head, tail)) = stat.rsplit_once(')') else {
                continue;
            };
            let comm = head.split_once('(').map_or("", |(_, c)| c);
            let ppid = tail
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(parent) && comm == name {
                return Some(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Lets this process (and the children it starts) open as many files as the hard limit
/// allows: ten thousand agents are ten thousand sockets here and in nats-server.
pub fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The control plane's and nats-server's readings, every second.
pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    _stop: tokio_util::sync::DropGuard,
}

/// One second's readings.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    pub control: Proc,
    pub nats: Proc,
}

/// CPU used between two samples, in cores (CPU seconds per second).
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub secs: f64,
    pub control_cpu_secs: f64,
    pub nats_cpu_secs: f64,
}

impl Window {
    pub fn control_cores(&self) -> f64 {
        self.control_cpu_secs / self.secs.max(1e-9)
    }
    pub fn nats_cores(&self) -> f64 {
        self.nats_cpu_secs / self.secs.max(1e-9)
    }
}

/// The largest RSS seen of each process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peak {
    pub control_rss: u64,
    pub nats_rss: u64,
}

impl Sampler {
    /// Samples `control` and `nats` every second until dropped.
    pub fn start(control: u32, nats: u32) -> Self {
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let token = tokio_util::sync::CancellationToken::new();
        let (into, stop) = (samples.clone(), token.clone());
        tokio::spawn(async move {
            loop {
                let sample = Sample {
                    at: Instant::now(),
                    control: read(control).unwrap_or_default(),
                    nats: read(nats).unwrap_or_default(),
                };
                into.lock().expect("samples").push(sample);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
        Self {
            samples,
            _stop: token.drop_guard(),
        }
    }

    /// A reading now.
    pub fn now(&self) -> Sample {
        *self
            .samples
            .lock()
            .expect("samples")
            .last()
            .expect("the sampler reads at once")
    }

    /// CPU between two readings.
    pub fn between(&self, from: Sample, to: Sample) -> Window {
        Window {
            secs: (to.at - from.at).as_secs_f64(),
            control_cpu_secs: to.control.cpu_secs - from.control.cpu_secs,
            nats_cpu_secs: to.nats.cpu_secs - from.nats.cpu_secs,
        }
    }

    pub fn peak(&self) -> Peak {
        let samples = self.samples.lock().expect("samples");
        Peak {
            control_rss: samples
                .iter()
                .map(|s| s.control.rss_bytes)
                .max()
                .unwrap_or(0),
            nats_rss: samples.iter().map(|s| s.nats.rss_bytes).max().unwrap_or(0),
        }
    }
}

/// The text of a `/metrics` page.
#[derive(Debug, Clone)]
pub struct Scrape {
    text: String,
}

impl Scrape {
    pub fn new(text: String) -> Self {
        Self { text }
    }

    /// The sum of every series of counter `name`.
    pub fn counter(&self, name: &str) -> f64 {
        self.series(name).map(|(_, v)| v).sum()
    }

    fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
        self.text.lines().filter_map(move |line| {
            let rest = line.strip_prefix(name)?;
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                return None;
            }
            let (labels, value) = rest.rsplit_once(' ')?;
            Some((labels, value.parse().ok()?))
        })
    }

    /// The upper bound of the bucket holding quantile `q` of histogram `name`, and its count.
    pub fn quantile(&self, name: &str, q: f64) -> Option<(f64, u64)> {
        let bucket = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = self
            .series(&bucket)
            .filter_map(|(labels, count)| {
                let le = labels.split("le=\"").nth(1)?.split('"').next()?;
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((bound, count))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last()?.1;
        if total == 0.0 {
            return None;
        }
        let bound = buckets.iter().find(|(_, count)| *count >= q * total)?.0;
        Some((bound, total as u64))
    }
}

/// Percentile `p` (0 to 1) of `values`, sorted here.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[((last as f64) * p).round() as usize])
}
