//! Timing a command: wall time, CPU time and peak RSS from `/usr/bin/time`, and the CPU the
//! registries spent meanwhile, from /proc.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// One timed run: wall time, CPU time and peak RSS (of the largest process, for a loop).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Sample {
    pub(super) wall: f64,
    pub(super) user: f64,
    pub(super) sys: f64,
    pub(super) rss_kb: u64,
    /// CPU seconds the registries (A and B) spent while the command ran.
    pub(super) registry_cpu: f64,
}

impl Sample {
    pub(super) fn absorb(&mut self, other: Sample) {
        self.user += other.user;
        self.sys += other.sys;
        self.rss_kb = self.rss_kb.max(other.rss_kb);
        self.registry_cpu += other.registry_cpu;
    }
}

/// CPU seconds (user + system) of every `docker-registry` this process started, by pid.
pub(super) fn registry_cpu() -> BTreeMap<u32, f64> {
    let me = std::process::id();
    let mut out = BTreeMap::new();
    let Ok(entries) = fs::read_dir("/proc") else { return out };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (comm) state ppid … utime stime …": comm may hold spaces, so split after ')'.
        let Some((head, rest)) = stat.rsplit_once(") ") else { continue };
        if !head.ends_with("(docker-registry") {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let parse = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        if parse(1) != Some(f64::from(me)) {
            continue;
        }
        if let (Some(utime), Some(stime)) = (parse(11), parse(12)) {
            out.insert(pid, (utime + stime) / clock_ticks());
        }
    }
    out
}

pub(super) fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

pub(super) fn registry_cpu_since(before: &BTreeMap<u32, f64>) -> f64 {
    registry_cpu().iter().map(|(pid, now)| now - before.get(pid).copied().unwrap_or(0.0)).sum()
}

/// A command line, run under `/usr/bin/time`.
#[derive(Debug, Clone)]
pub(super) struct Cmd {
    pub(super) argv: Vec<OsString>,
}

impl Cmd {
    pub(super) fn new<I, S>(argv: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Cmd { argv: argv.into_iter().map(|a| a.as_ref().to_owned()).collect() }
    }

    /// Runs the command with `key=value` in its environment (through `env`, which execs it, so
    /// `/usr/bin/time` still measures the command itself).
    pub(super) fn with_env(mut self, key: &str, value: &str) -> Cmd {
        self.argv.splice(0..0, ["env".into(), format!("{key}={value}").into()]);
        self
    }

    pub(super) fn line(&self) -> String {
        self.argv.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
    }
}

#[derive(Debug)]
pub(super) struct Timer {
    pub(super) time_file: PathBuf,
    pub(super) cwd: PathBuf,
}

impl Timer {
    /// Runs `cmd`, timed. A failure is an error unless `allow_fail`; the output comes back either way.
    pub(super) fn run(&self, cmd: &Cmd, allow_fail: bool) -> Result<(Sample, Output)> {
        let mut command = Command::new("/usr/bin/time");
        command.arg("-f").arg("%M %U %S").arg("-o").arg(&self.time_file).args(&cmd.argv);
        command.current_dir(&self.cwd).stdin(Stdio::null());
        // The user's own hpn settings must not change what is measured.
        for key in [
            "HPN_STORE",
            "HPN_CONFIG",
            "HPN_JOBS",
            "HPN_SAVE_MODE",
            "HPN_PLATFORM",
            "HPN_RETRIES",
            "HPN_INSECURE_REGISTRIES",
            "HPN_REGISTRY",
            "HPN_PROJECT",
            "HPN_SYNC",
            "HPN_STALL_TIMEOUT",
            "HPN_REQUESTS_PER_HOST",
            "RUST_LOG",
        ] {
            command.env_remove(key);
        }
        // hpn's cache (where it remembers pushed blobs, for mounts) belongs to the bench, not
        // to whoever runs it: a user's earlier pushes must not shape what is measured.
        command.env("XDG_CACHE_HOME", self.cwd.join("xdg-cache"));
        let registries = registry_cpu();
        let start = Instant::now();
        let output = command.output().with_context(|| format!("cannot run `{}`", cmd.line()))?;
        let wall = start.elapsed().as_secs_f64();
        let registry_cpu = registry_cpu_since(&registries);
        if !output.status.success() && !allow_fail {
            bail!(
                "`{}` failed ({}):\n{}{}",
                cmd.line(),
                output.status,
                tail(&output.stdout, 10),
                tail(&output.stderr, 20)
            );
        }
        let text = fs::read_to_string(&self.time_file).unwrap_or_default();
        let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        let mut fields = last.split_whitespace();
        let rss_kb = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
        let user = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0.0);
        let sys = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0.0);
        Ok((Sample { wall, user, sys, rss_kb, registry_cpu }, output))
    }

    pub(super) fn time(&self, cmd: &Cmd) -> Result<Sample> {
        Ok(self.run(cmd, false)?.0)
    }

    /// Runs commands one after another, as a shell loop would; wall time of the whole loop.
    pub(super) fn time_loop(&self, cmds: &[Cmd], allow_fail: bool) -> Result<(Sample, Vec<String>)> {
        let mut total = Sample::default();
        let mut failures = Vec::new();
        let start = Instant::now();
        for cmd in cmds {
            let (sample, output) = self.run(cmd, allow_fail)?;
            total.absorb(sample);
            if !output.status.success() {
                let what = cmd.argv.iter().rev().nth(1).map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
                let error = tail(&output.stderr, 1);
                // skopeo logs `time="…" level=fatal msg="…"`: keep the message, so runs repeat the same note.
                let error = error.split_once("msg=").map_or(error.trim(), |(_, m)| m.trim());
                failures.push(format!("{} {what}: {error}", cmd.argv[0].to_string_lossy()));
            }
        }
        total.wall = start.elapsed().as_secs_f64();
        Ok((total, failures))
    }
}

pub(super) fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

pub(super) fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 }
}
