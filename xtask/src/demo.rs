//! `cargo xtask demo`: hpn saving real images from a real registry, and independent checks of
//! what it wrote.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use hpn_testkit::fixtures::{self, PushedImage, Scale};
use hpn_testkit::{Podman, Registry, skopeo_inspect};

use crate::{cargo, human_size, status, workspace_root};

pub(crate) fn run() -> Result<()> {
    install_missing_packages()?;
    step("building hpn (cargo build --bin hpn)");
    status(cargo().args(["build", "--bin", "hpn"]))?;
    let hpn = target_dir().join("debug").join("hpn");

    step("starting a registry and pushing the small fixtures");
    let registry = Registry::start()?;
    let set = fixtures::build(Scale::Small)?;
    let pushed = fixtures::push(&set, registry.addr())?;
    println!("registry: http://{}", registry.addr());

    let tmp = tempfile::Builder::new().prefix("hpn-demo-").tempdir()?;
    let picked: Vec<(&PushedImage, String)> = vec![
        (pushed.image("app-a"), pushed.image("app-a").reference.clone()),
        (pushed.image("app-b"), pushed.image("app-b").reference.clone()),
        (pushed.image("multi"), pushed.image("multi").reference.clone()),
        (pushed.image("zstd"), pushed.image("zstd").reference.clone()),
        (pushed.image("by-digest"), pushed.image("by-digest").digest_reference.clone()),
    ];
    let list = format!(
        "# Images for the offline bundle, one reference per line.\n\
         # Docker schema2 and OCI images side by side:\n\
         {}\n\
         {}\n\
         \n\
         # A multi-arch index (hpn saves the host's platform) and a zstd-compressed layer:\n\
         {}\n\
         {}\n\
         # Pinned by digest, no tag:\n\
         {}\n",
        picked[0].1, picked[1].1, picked[2].1, picked[3].1, picked[4].1
    );
    let list_path = tmp.path().join("images.txt");
    fs::write(&list_path, &list)?;
    println!("\n{}:\n{list}", list_path.display());

    let archive = tmp.path().join("images.tar");
    let store = tmp.path().join("store");
    step(&format!(
        "{} save -f {} -o {} --store {}",
        hpn.display(),
        list_path.display(),
        archive.display(),
        store.display()
    ));
    let start = Instant::now();
    let mut save = std::process::Command::new(&hpn);
    save.arg("save").arg("-f").arg(&list_path).arg("-o").arg(&archive).arg("--store").arg(&store);
    status(&mut save)?;
    println!("hpn save took {:.2?}", start.elapsed());

    step("the archive");
    let size = fs::metadata(&archive)?.len();
    println!("{}: {} ({size} bytes)", archive.display(), human_size(size));
    let entries = list_tar(&archive)?;
    let mut blobs = 0;
    for (name, size) in &entries {
        if name.starts_with("blobs/") {
            blobs += 1;
        }
        println!("  {size:>10}  {name}");
    }
    println!("{} entries, {blobs} of them blobs", entries.len());

    step("digests: registry vs archive index.json vs skopeo reading the archive");
    let index = read_index(&archive)?;
    let mut mismatches = 0;
    for (image, reference) in &picked {
        let registry_digest =
            skopeo_inspect(&format!("docker://{reference}"))?["Digest"].as_str().unwrap_or_default().to_owned();
        println!("{reference}");
        println!("  pushed          {}", image.digest);
        println!("  registry        {registry_digest}  (skopeo inspect docker://)");
        let entry = index.iter().find(|e| e.name.as_deref() == Some(reference.as_str()));
        match entry {
            None => {
                println!("  index.json      no entry named {reference}");
                mismatches += 1;
            }
            Some(e) => {
                let ok = e.digest == image.digest;
                mismatches += usize::from(!ok);
                println!("  index.json      {}  {}", e.digest, verdict(ok));
                match skopeo_selector(&index, e) {
                    Ok(sel) => {
                        let image_ref = format!("oci-archive:{}:{sel}", archive.display());
                        let got =
                            skopeo_inspect(&image_ref).map(|v| v["Digest"].as_str().unwrap_or_default().to_owned());
                        match got {
                            Ok(d) => {
                                // For an index skopeo reports the digest of the platform manifest
                                // it picked.
                                let want: Vec<&str> = std::iter::once(image.digest.as_str())
                                    .chain(image.platforms.iter().map(|p| p.manifest.digest.as_str()))
                                    .collect();
                                let ok = want.contains(&d.as_str());
                                mismatches += usize::from(!ok);
                                println!("  skopeo archive  {d}  {}  (oci-archive:…:{sel})", verdict(ok));
                            }
                            Err(err) => {
                                mismatches += 1;
                                println!("  skopeo archive  failed: {err:#}");
                            }
                        }
                    }
                    Err(why) => println!("  skopeo archive  not checked: {why}"),
                }
            }
        }
    }
    drop(registry);
    if mismatches > 0 {
        println!("\nfiles kept in {}", tmp.keep().display());
        bail!("{mismatches} digest check(s) failed");
    }
    println!("\nall digests match");

    step(&format!("podman load -i {} (vfs storage in a temp directory, no daemon)", archive.display()));
    let podman = Podman::new();
    print!("{}", podman.load(&archive)?);
    step("podman images");
    for image in podman.images()? {
        let id = image["Id"].as_str().unwrap_or_default();
        let names = image["Names"].as_array().map(Vec::as_slice).unwrap_or_default();
        for name in names.iter().filter_map(serde_json::Value::as_str) {
            println!("  {name}  {}", id.get(..12).unwrap_or(id));
        }
        if names.is_empty() {
            println!("  <none>  {}", id.get(..12).unwrap_or(id));
        }
    }
    Ok(())
}

/// Installs the Debian packages the demo needs (the list `.ci/run` installs) when some are
/// missing: with apt-get when running as root, else says the one command to run.
fn install_missing_packages() -> Result<()> {
    let missing = hpn_testkit::missing_debian_packages();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    let apt = Path::new("/usr/bin/apt-get").exists();
    if !(hpn_testkit::is_root() && apt) {
        bail!(
            "the demo needs Debian packages that are not installed: {list}\n\
             install them with:\n  sudo apt-get update && sudo apt-get install -y --no-install-recommends {list}"
        );
    }
    step(&format!("installing {list} (apt-get, as root)"));
    status(std::process::Command::new("apt-get").arg("update"))?;
    status(
        std::process::Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISMATCH" }
}

fn step(what: &str) {
    println!("\n== {what}");
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

fn list_tar(path: &Path) -> Result<Vec<(String, u64)>> {
    let mut archive = tar::Archive::new(File::open(path)?);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let entry = entry?;
        out.push((entry.path()?.to_string_lossy().into_owned(), entry.header().size()?));
    }
    Ok(out)
}

#[derive(Debug)]
struct IndexEntry {
    media_type: String,
    digest: String,
    /// `io.containerd.image.name`: the full reference.
    name: Option<String>,
    /// `org.opencontainers.image.ref.name`: what skopeo's `oci-archive:FILE:NAME` matches.
    ref_name: Option<String>,
}

fn read_index(archive: &Path) -> Result<Vec<IndexEntry>> {
    let mut tar = tar::Archive::new(File::open(archive)?);
    for entry in tar.entries()? {
        let mut entry = entry?;
        if entry.path()?.as_os_str() != "index.json" {
            continue;
        }
        let mut text = String::new();
        entry.read_to_string(&mut text)?;
        let v: serde_json::Value = serde_json::from_str(&text).context("index.json")?;
        let s = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        return Ok(v["manifests"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|m| IndexEntry {
                media_type: s(&m["mediaType"]).unwrap_or_default(),
                digest: s(&m["digest"]).unwrap_or_default(),
                name: s(&m["annotations"]["io.containerd.image.name"]),
                ref_name: s(&m["annotations"]["org.opencontainers.image.ref.name"]),
            })
            .collect());
    }
    bail!("{} has no index.json", archive.display())
}

/// The name skopeo 1.9 would select `entry` by: it takes the first entry whose ref.name matches
/// among those of OCI media types only, so an entry is reachable only if that picks it.
fn skopeo_selector(index: &[IndexEntry], entry: &IndexEntry) -> Result<String, String> {
    let oci = |e: &IndexEntry| e.media_type.starts_with("application/vnd.oci.image.");
    if !oci(entry) {
        return Err(format!("skopeo 1.9 skips {} entries in an OCI index", entry.media_type));
    }
    let Some(name) = &entry.ref_name else {
        return Err("the entry has no org.opencontainers.image.ref.name".into());
    };
    let mut by_name: BTreeMap<&str, Vec<&IndexEntry>> = BTreeMap::new();
    for e in index.iter().filter(|e| oci(e)) {
        if let Some(n) = &e.ref_name {
            by_name.entry(n).or_default().push(e);
        }
    }
    match by_name.get(name.as_str()).and_then(|v| v.first()) {
        Some(first) if first.digest == entry.digest => Ok(name.clone()),
        _ => Err(format!("ref.name {name:?} first names another image, so skopeo would pick that one")),
    }
}
