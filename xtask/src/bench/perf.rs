//! `perf record` profiles of hpn jobs: running `perf report` and reading its table.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Result;

#[derive(Debug)]
pub(super) struct Profile {
    pub(super) name: String,
    pub(super) samples: u64,
    /// (percent of samples, where).
    pub(super) top: Vec<(f64, String)>,
}

pub(super) fn perf_works() -> bool {
    Command::new("perf")
        .args(["record", "-q", "-o", "/dev/null", "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(super) fn perf_report(name: &str, data: &Path) -> Result<Option<Profile>> {
    let output = Command::new("perf")
        .arg("report")
        .arg("-i")
        .arg(data)
        .args(["--stdio", "--no-children", "-g", "none", "--sort", "dso,symbol", "--percent-limit", "1"])
        .stderr(Stdio::null())
        .output()?;
    if !output.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut samples = 0;
    let mut top = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# Samples: ") {
            samples = parse_count(rest.split_whitespace().next().unwrap_or("0"));
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((pct, rest)) = line.split_once('%') else { continue };
        let Ok(pct) = pct.trim().parse::<f64>() else { continue };
        // "hpn  [.] sha2::…" → "hpn: sha2::…"
        let rest = rest.split_whitespace().collect::<Vec<_>>().join(" ");
        let rest = rest.replacen(" [.] ", ": ", 1).replacen(" [k] ", ": ", 1);
        let rest = rest.trim_end_matches(" - -").trim_end_matches(" -").to_owned();
        top.push((pct, rest));
        if top.len() == 12 {
            break;
        }
    }
    Ok(Some(Profile { name: name.to_owned(), samples, top }))
}

/// perf prints "6K" for 6000-odd samples.
pub(super) fn parse_count(text: &str) -> u64 {
    let (digits, factor) = match text.chars().last() {
        Some('K') => (&text[..text.len() - 1], 1_000.0),
        Some('M') => (&text[..text.len() - 1], 1_000_000.0),
        _ => (text, 1.0),
    };
    (digits.parse::<f64>().unwrap_or(0.0) * factor) as u64
}

/// A profile's top entries by kind: "its 12 top entries hold 60% of the samples: sha256 23%, …".
pub(super) fn profile_summary(p: &Profile) -> String {
    let (mut sha, mut kernel, mut copies, mut rest) = (0.0, 0.0, 0.0, 0.0);
    for (pct, what) in &p.top {
        if what.contains("sha2::") || what.to_ascii_lowercase().contains("sha256") {
            sha += pct;
        } else if what.starts_with("[kernel") {
            kernel += pct;
        } else if what.starts_with("libc") && what.contains("mem") {
            copies += pct;
        } else {
            rest += pct;
        }
    }
    let parts: Vec<String> = [
        (sha, "sha256 hashing"),
        (kernel, "the kernel (copying pages, TCP, the file system)"),
        (copies, "libc's memcpy/memmove/memset"),
        (rest, "the rest"),
    ]
    .into_iter()
    .filter(|(pct, _)| *pct > 0.0)
    .map(|(pct, what)| format!("{what} {pct:.0}%"))
    .collect();
    let largest = p
        .top
        .first()
        .map_or_else(String::new, |(pct, what)| format!("; the largest is `{}` at {pct:.1}%", what.replace('`', "'")));
    format!(
        "{} samples; its {} top entries hold {:.0}% of them: {}{largest}",
        p.samples,
        p.top.len(),
        sha + kernel + copies + rest,
        parts.join(", ")
    )
}
