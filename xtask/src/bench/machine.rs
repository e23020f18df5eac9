//! The machine the bench ran on, for the report: CPU, RAM, kernel, file system, tool versions.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{human_size, workspace_root};

#[derive(Debug)]
pub(super) struct Machine {
    pub(super) cpu: String,
    pub(super) cores: usize,
    pub(super) ram: String,
    pub(super) kernel: String,
    pub(super) fs: String,
    pub(super) tools: Vec<(String, String)>,
    pub(super) commit: String,
    /// /proc/loadavg when the bench started: other work on the machine skews every number.
    pub(super) load: String,
}

impl Machine {
    pub(super) fn probe(work: &Path) -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let sha_ni = cpuinfo
            .lines()
            .find(|l| l.starts_with("flags"))
            .is_some_and(|l| l.split_whitespace().any(|f| f == "sha_ni"));
        let cpu = if sha_ni { format!("{cpu} (SHA-NI)") } else { format!("{cpu} (no SHA-NI)") };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let ram = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or_else(|| "unknown".to_owned(), |kb| human_size(kb * 1024));
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
        let fs = filesystem_of(work);
        let version = |program: &str, args: &[&str]| -> String {
            Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .ok()
                .map(|o| {
                    let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
                    String::from_utf8_lossy(&text).lines().next().unwrap_or_default().trim().to_owned()
                })
                .unwrap_or_else(|| "not found".to_owned())
        };
        let tools = vec![
            ("skopeo".to_owned(), version("skopeo", &["--version"])),
            ("docker-registry".to_owned(), version("docker-registry", &["--version"])),
            ("curl".to_owned(), version("curl", &["--version"])),
            ("rustc".to_owned(), version("rustc", &["--version"])),
        ];
        let commit = {
            let rev = version("git", &["-C", &workspace_root().to_string_lossy(), "rev-parse", "--short", "HEAD"]);
            let dirty = Command::new("git")
                .args(["-C", &workspace_root().to_string_lossy(), "status", "--porcelain", "--untracked-files=no"])
                .output()
                .is_ok_and(|o| !o.stdout.is_empty());
            if dirty { format!("{rev} + uncommitted changes") } else { rev }
        };
        let load = load_average();
        Machine { cpu, cores, ram, kernel, fs, tools, commit, load }
    }

    pub(super) fn summary(&self) -> String {
        format!(
            "machine: {}, {} cores, {} RAM, Linux {}, {} (hpn at {})",
            self.cpu, self.cores, self.ram, self.kernel, self.fs, self.commit
        )
    }
}

/// The 1, 5 and 15 minute load averages.
pub(super) fn load_average() -> String {
    fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The file system type and device of the mount holding `path`, from /proc/self/mountinfo.
pub(super) fn filesystem_of(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else { continue };
        let (Some(mount), Some(fstype), Some(source)) = (fields.get(4), fields.get(dash + 1), fields.get(dash + 2))
        else {
            continue;
        };
        if path.starts_with(mount) && best.as_ref().is_none_or(|(len, _)| mount.len() >= *len) {
            best = Some((mount.len(), format!("{fstype} on {source} (mounted at {mount})")));
        }
    }
    best.map_or_else(|| "unknown".to_owned(), |(_, s)| s)
}
