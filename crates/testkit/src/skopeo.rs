//! skopeo, the independent client: seeds registries in other shapes and reads what hpn writes.

use std::ffi::OsStr;
use std::process::Command;

use anyhow::{Context, Result};

use crate::process::run;

/// Runs `skopeo --insecure-policy <args>` and returns stdout; an error carries stderr.
///
/// `--insecure-policy` is a global flag, so it is always given: a machine without
/// /etc/containers/policy.json would otherwise refuse every copy. `--tls-verify=false` is not
/// added: it belongs to the subcommand (`--src-tls-verify`/`--dest-tls-verify` for copy).
pub fn skopeo<I, S>(args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("skopeo");
    cmd.arg("--insecure-policy").args(args);
    run(&mut cmd)
}

/// `skopeo inspect` of `image` (`docker://127.0.0.1:PORT/repo:tag`, `oci-archive:FILE:NAME`, ...),
/// parsed. For `docker://` the registry is spoken to over plain HTTP, and tags are not listed
/// (`RepoTags` is empty): listing fails on a repository that has none, such as one pushed by
/// digest only. Call [`skopeo`] directly for the tags.
pub fn skopeo_inspect(image: &str) -> Result<serde_json::Value> {
    let mut args = vec!["inspect"];
    if image.starts_with("docker://") {
        args.extend(["--tls-verify=false", "--no-tags"]);
    }
    args.push(image);
    let out = skopeo(args)?;
    serde_json::from_str(&out).with_context(|| format!("skopeo inspect {image}: output is not JSON"))
}

/// `skopeo inspect --raw`: the manifest or index bytes exactly as skopeo read them.
pub fn skopeo_inspect_raw(image: &str) -> Result<Vec<u8>> {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "inspect", "--raw"]);
    if image.starts_with("docker://") {
        cmd.arg("--tls-verify=false");
    }
    cmd.arg(image);
    // Raw bytes: a lossy UTF-8 round trip through `run` could change them.
    let line = crate::process::command_line(&cmd);
    let out = cmd.stdin(std::process::Stdio::null()).output().with_context(|| format!("cannot run `{line}`"))?;
    if !out.status.success() {
        anyhow::bail!("`{line}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out.stdout)
}
