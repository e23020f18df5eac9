//! Hostile archives at the `hpn` binary level, beyond the reader's own tests (which cover
//! entry names, links, duplicates, truncation and metadata sizes): decompression bombs in the
//! outer compression, huge layers, a manifest.json with thousands of entries, a layer whose
//! DiffID does not match. hpn must answer with a clear error or do the work with bounded
//! memory and disk, and push or store nothing of a bad image.
//!
//! Memory and disk are measured on the live child: its peak RSS (`VmHWM`, sampled while it
//! runs) and the bytes it wrote (`wchar` of `/proc/PID/io`, read after it exited and before
//! it is reaped, so it is exact).

mod common;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Run, Workspace, committed_blobs};
use flate2::Compression;
use flate2::write::GzEncoder;
use hpn_testkit::fixtures::{self, FixtureSet, Scale};
use hpn_testkit::{FaultProxy, Registry};
use rustix::process::{Pid, WaitId, WaitIdOptions, waitid};

const MIB: u64 = 1024 * 1024;
/// Far above what hpn needs (about 10 MB here); far below any of the payloads below.
const MAX_RSS: u64 = 100 * MIB;

/// What a finished child used.
#[derive(Debug)]
struct Usage {
    peak_rss: u64,
    written: u64,
    read: u64,
}

fn proc_field(path: &Path, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|line| line.starts_with(name))?;
    let value: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(if line.ends_with("kB") { value * 1024 } else { value })
}

/// Runs hpn, sampling its peak RSS while it runs; its I/O totals once it has exited.
fn run_measured(work: &Workspace, args: &[&str], env: &[(&str, &str)]) -> (Run, Usage) {
    let mut child = work.spawn(args, env);
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    let proc_dir = PathBuf::from(format!("/proc/{}", child.id()));
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let mut peak_rss = 0;
    loop {
        if let Some(rss) = proc_field(&proc_dir.join("status"), "VmHWM:") {
            peak_rss = peak_rss.max(rss);
        }
        // Exited, but left unreaped so its /proc entry still has the totals.
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        if waitid(WaitId::Pid(pid), options).expect("waitid").is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("hpn {args:?} ran for more than two minutes");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let io = proc_dir.join("io");
    let usage = Usage {
        peak_rss,
        written: proc_field(&io, "wchar:").expect("/proc/PID/io of the exited child"),
        read: proc_field(&io, "rchar:").expect("/proc/PID/io of the exited child"),
    };
    let status = child.wait().unwrap();
    let run = Run { code: status.code().unwrap_or(-1), stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() };
    (run, usage)
}

/// A tar built entry by entry, names written as given (no checks, no normalization).
struct RawTar(Vec<u8>);

impl RawTar {
    fn new() -> RawTar {
        RawTar(Vec::new())
    }

    fn header(name: &str, size: u64) -> [u8; 512] {
        let mut header = tar::Header::new_ustar();
        header.set_path(name).unwrap();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        *header.as_bytes()
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut RawTar {
        self.0.extend(Self::header(name, data.len() as u64));
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().next_multiple_of(512), 0);
        self
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend([0; 1024]);
        self.0
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// gzip members of zeros decompressing to `len` bytes in all, written to `out`. gzip
/// readers (hpn's too) read concatenated members as one stream, so a few KB of compressed
/// zeros, written again and again, make gigabytes without ever being held or compressed
/// whole.
fn write_zero_members(out: &mut impl std::io::Write, len: u64) {
    const PIECE: u64 = 64 * MIB;
    let piece = gzip(&vec![0; PIECE as usize]);
    for _ in 0..len / PIECE {
        out.write_all(&piece).unwrap();
    }
    out.write_all(&gzip(&vec![0; (len % PIECE) as usize])).unwrap();
}

/// A `docker save` (≤ 24) archive of a fixture image: `<hex>.json` config, uncompressed
/// `<n>/layer.tar` layers (their sha256 is their DiffID, which the reader checks at open),
/// named `tags`. `swap` puts layer `b`'s content where layer `a` belongs.
fn docker_save(set: &FixtureSet, name: &str, tags: &[&str], swap: Option<(usize, usize)>) -> Vec<u8> {
    let image = set.image(name).amd64();
    let config = set.read_blob(&image.config.digest).unwrap();
    let mut layers: Vec<Vec<u8>> = image.layers.iter().map(|l| gunzip(&set.read_blob(&l.digest).unwrap())).collect();
    if let Some((a, b)) = swap {
        layers[a] = layers[b].clone();
    }
    let config_name = format!("{}.json", &image.config.digest[7..]);
    let layer_names: Vec<String> = (0..layers.len()).map(|i| format!("{i:064x}/layer.tar")).collect();
    let manifest = serde_json::json!([{ "Config": config_name, "RepoTags": tags, "Layers": layer_names }]);
    let mut tar = RawTar::new();
    tar.file(&config_name, &config);
    for (name, layer) in layer_names.iter().zip(&layers) {
        tar.file(name, layer);
    }
    tar.file("manifest.json", manifest.to_string().as_bytes());
    tar.finish()
}

fn site_is_empty(site: &Registry) -> bool {
    // The registry's storage holds repositories only once something was pushed into them.
    let repositories = site.storage_dir().join("docker/registry/v2/repositories");
    std::fs::read_dir(&repositories).map_or(true, |mut entries| entries.next().is_none())
}

/// Whether any repository of the registry has a manifest (a blob alone names no image).
fn site_has_manifests(site: &Registry) -> bool {
    let repositories = site.storage_dir().join("docker/registry/v2/repositories");
    let Ok(entries) = std::fs::read_dir(&repositories) else { return false };
    entries.flatten().any(|repository| repository.path().join("_manifests").exists())
}

/// What a refused archive may leave behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// Refused when it is opened and indexed: nothing at all reaches the store or the registry.
    AtOpen,
    /// Refused when a layer streams out and fails its check: blobs that passed theirs may
    /// remain (as after `docker load` or `skopeo copy` of the same archive), but no manifest,
    /// tag or ref. Checking first would read every layer of every archive twice.
    WhileCopying,
}

/// `hpn load -i` and `hpn push -i` of `archive`: both must fail (exit 4) naming the archive
/// and `parts`, with bounded memory, leaving no image in the store or the registry.
#[track_caller]
fn assert_refused(work: &Workspace, archive: &Path, parts: &[&str], max_written: u64) -> Vec<(Run, Usage)> {
    assert_refused_when(Refused::AtOpen, work, archive, parts, max_written)
}

#[track_caller]
fn assert_refused_when(
    when: Refused,
    work: &Workspace,
    archive: &Path,
    parts: &[&str],
    max_written: u64,
) -> Vec<(Run, Usage)> {
    let site = Registry::start().unwrap();
    let tmp = work.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let env = [("TMPDIR", tmp.to_str().unwrap())];
    let archive_arg = archive.to_str().unwrap();
    let mut results = Vec::new();
    for args in [vec!["load", "-i", archive_arg], vec!["push", "-i", archive_arg, "-r", site.addr()]] {
        let (run, usage) = run_measured(work, &args, &env);
        assert_eq!(run.code, 4, "{args:?}:\n{}", run.stderr);
        let name = archive.file_name().unwrap().to_str().unwrap();
        for part in std::iter::once(name).chain(parts.iter().copied()) {
            assert!(run.stderr.contains(part), "{args:?}: {part:?} is not in the error:\n{}", run.stderr);
        }
        assert!(usage.peak_rss < MAX_RSS, "{args:?}: peak RSS {} MiB", usage.peak_rss / MIB);
        assert!(usage.written < max_written, "{args:?} wrote {} MiB: {usage:?}", usage.written / MIB);
        results.push((run, usage));
    }
    assert!(!site_has_manifests(&site), "a manifest was pushed from a refused archive");
    assert!(work.store_refs().is_empty(), "an image was stored from a refused archive");
    if when == Refused::AtOpen {
        assert!(site_is_empty(&site), "something was pushed from a refused archive");
        assert!(committed_blobs(&work.store()).is_empty(), "something was stored from a refused archive");
    }
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "temp files left in TMPDIR");
    results
}

#[test]
fn a_gzip_bomb_of_zeros_is_refused_at_once_with_bounded_memory_and_disk() {
    let work = Workspace::new();
    let bomb = work.path().join("bomb.tar.gz");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&bomb).unwrap());
    // 10 GiB of zeros, in about 10 MB.
    write_zero_members(&mut file, 10 * 1024 * MIB);
    file.into_inner().unwrap().sync_all().unwrap();
    let compressed = std::fs::metadata(&bomb).unwrap().len();
    assert!(compressed < 20 * MIB, "{compressed}");

    // Zeros are an empty tar: its end-of-archive block comes first, and nothing after it is
    // read past a small allowance, let alone written.
    let results = assert_refused(&work, &bomb, &["not an image archive"], 4 * MIB);
    for (_, usage) in &results {
        assert!(usage.read < 4 * MIB, "read {} MiB of the bomb: {usage:?}", usage.read / MIB);
    }
}

#[test]
fn an_archive_followed_by_a_bomb_loads_and_the_bomb_is_never_read() {
    let set = fixtures::build(Scale::Small).unwrap();
    let work = Workspace::new();
    let archive = work.path().join("app.tar.gz");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&archive).unwrap());
    let tar = docker_save(&set, "app-a", &["hostile/app-a:1"], None);
    file.write_all(&gzip(&tar)).unwrap();
    write_zero_members(&mut file, 10 * 1024 * MIB);
    file.into_inner().unwrap().sync_all().unwrap();

    let tmp = work.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let (run, usage) =
        run_measured(&work, &["load", "-i", archive.to_str().unwrap()], &[("TMPDIR", tmp.to_str().unwrap())]);
    run.assert_ok();
    // The spooled tar, the store's blobs and small files: a few times the tar, not 10 GiB.
    assert!(usage.written < 4 * tar.len() as u64 + 4 * MIB, "wrote {} MiB: {usage:?}", usage.written / MIB);
    assert!(usage.peak_rss < MAX_RSS, "peak RSS {} MiB", usage.peak_rss / MIB);
    assert_eq!(work.store_refs(), ["docker.io/hostile/app-a:1"]);
    work.assert_store_verifies();
}

#[test]
fn a_huge_layer_is_handled_with_bounded_memory_and_its_wrong_diff_id_refused() {
    let set = fixtures::build(Scale::Small).unwrap();
    let work = Workspace::new();
    // A docker save archive of one image whose single layer is 256 MiB of zeros in one
    // file, gzip-compressed as a whole (256 KiB): hpn must decompress it to disk and hash it,
    // and then find that the config says the layer is something else.
    let layer_data = 256 * MIB;
    let inner_header = RawTar::header("big.bin", layer_data);
    // The layer tar: header, data, end-of-archive; all zeros after the header.
    let layer_len = 512 + layer_data + 1024;
    let wrong_diff_id = format!("sha256:{}", "ab".repeat(32));
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [wrong_diff_id]},
        "config": {}
    })
    .to_string();
    let config_name = format!("{}.json", &common::digest_of(config.as_bytes())[7..]);
    let manifest =
        serde_json::json!([{ "Config": config_name, "RepoTags": ["hostile/huge:1"], "Layers": ["huge/layer.tar"] }]);
    let mut head = RawTar::new();
    head.file(&config_name, config.as_bytes());
    head.file("manifest.json", manifest.to_string().as_bytes());
    head.0.extend(RawTar::header("huge/layer.tar", layer_len));
    head.0.extend(inner_header);
    let archive = work.path().join("huge.tar.gz");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&archive).unwrap());
    file.write_all(&gzip(&head.0)).unwrap();
    // The rest of the layer, its padding (none: a multiple of 512) and the outer end.
    write_zero_members(&mut file, layer_len - 512 + 1024);
    file.into_inner().unwrap().sync_all().unwrap();
    drop(set);

    // The decompressed copy is by design (a tar must be read at offsets), and is all it
    // writes; memory stays flat.
    let results = assert_refused(&work, &archive, &["huge/layer.tar", &wrong_diff_id], layer_len + 64 * MIB);
    for (_, usage) in &results {
        assert!(usage.written >= layer_len, "the layer was not spooled? {usage:?}");
    }
}

#[test]
fn a_layer_that_is_not_what_the_config_says_is_refused_naming_archive_and_entry() {
    let set = fixtures::build(Scale::Small).unwrap();
    let work = Workspace::new();
    // Layer 2 of app-a carries layer 3's content: each tar is valid, but its DiffID is not
    // the one the config lists for its place.
    let archive = work.path().join("swapped.tar");
    std::fs::write(&archive, docker_save(&set, "app-a", &["hostile/swapped:1"], Some((1, 2)))).unwrap();
    let image = set.image("app-a").amd64();
    let expected = image.diff_ids[1].as_str();
    let actual = image.diff_ids[2].as_str();
    let entry = format!("{:064x}/layer.tar", 1);
    assert_refused(&work, &archive, &[&entry, expected, actual], 16 * MIB);
}

/// Decompressed layers of a gzip-layered archive (hpn's own format): the archive's blobs
/// match their digests, but one config lists a DiffID its layer does not decompress to.
/// hpn decompresses each such layer as it streams out of the archive and refuses the image
/// before anything is stored or pushed (docker would only reject it at load or pull time).
#[test]
fn a_compressed_layer_whose_diff_id_does_not_match_is_refused() {
    let set = fixtures::build(Scale::Small).unwrap();
    let work = Workspace::new();
    let image = set.image("app-b").amd64();
    // An OCI layout: index.json → manifest → config with DiffID 2 replaced by DiffID 1.
    let mut config: serde_json::Value = serde_json::from_slice(&set.read_blob(&image.config.digest).unwrap()).unwrap();
    config["rootfs"]["diff_ids"][2] = config["rootfs"]["diff_ids"][1].clone();
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = common::digest_of(&config);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&set.read_blob(&image.manifest.digest).unwrap()).unwrap();
    manifest["config"]["digest"] = config_digest.clone().into();
    manifest["config"]["size"] = config.len().into();
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = common::digest_of(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"io.containerd.image.name": "docker.io/hostile/oci:1", "org.opencontainers.image.ref.name": "1"}
        }]
    });
    let mut tar = RawTar::new();
    tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    tar.file(&format!("blobs/sha256/{}", &config_digest[7..]), &config);
    tar.file(&format!("blobs/sha256/{}", &manifest_digest[7..]), &manifest);
    for layer in &image.layers {
        tar.file(&format!("blobs/sha256/{}", &layer.digest[7..]), &set.read_blob(&layer.digest).unwrap());
    }
    tar.file("index.json", index.to_string().as_bytes());
    let archive = work.path().join("oci.tar");
    std::fs::write(&archive, tar.finish()).unwrap();
    let parts = [archive.to_str().unwrap(), &image.layers[2].digest, &image.diff_ids[1]];
    assert_refused_when(Refused::WhileCopying, &work, &archive, &parts, 16 * MIB);
}

/// manifest.json with 5000 entries. (Distinct tags would each become a ref; the store
/// rewrites and syncs index.json per ref, some 50 ms each here, so a few hundred tags already
/// take seconds; reported to the lead rather than tested at that size.)
#[test]
fn a_manifest_json_with_thousands_of_entries_is_read_with_bounded_memory() {
    let set = fixtures::build(Scale::Small).unwrap();
    let work = Workspace::new();
    let image = set.image("base").amd64();
    let config_name = format!("{}.json", &image.config.digest[7..]);
    let config = set.read_blob(&image.config.digest).unwrap();
    let layer = gunzip(&set.read_blob(&image.layers[0].digest).unwrap());
    let archive = |last_layer: &str| {
        let mut entries: Vec<serde_json::Value> = (0..5000)
            .map(|_| serde_json::json!({"Config": config_name, "RepoTags": ["many/entries:1"], "Layers": ["l/layer.tar"]}))
            .collect();
        entries[4999]["Layers"][0] = last_layer.into();
        let mut tar = RawTar::new();
        tar.file(&config_name, &config);
        tar.file("l/layer.tar", &layer);
        tar.file("manifest.json", serde_json::Value::from(entries).to_string().as_bytes());
        tar.finish()
    };

    // Every entry names the same image: one image, stored and pushed once.
    let path = work.path().join("many.tar");
    std::fs::write(&path, archive("l/layer.tar")).unwrap();
    let (run, usage) = run_measured(&work, &["load", "-i", path.to_str().unwrap(), "--json"], &[]);
    run.assert_ok();
    assert!(usage.peak_rss < MAX_RSS, "peak RSS {} MiB", usage.peak_rss / MIB);
    assert_eq!(work.store_refs(), ["docker.io/many/entries:1"]);
    let site = Registry::start().unwrap();
    let proxy = FaultProxy::start(site.addr()).unwrap();
    let (run, usage) = run_measured(&work, &["push", "-i", path.to_str().unwrap(), "-r", proxy.addr()], &[]);
    run.assert_ok();
    assert!(usage.peak_rss < MAX_RSS, "peak RSS {} MiB", usage.peak_rss / MIB);
    let puts = |what: &str| proxy.requests().iter().filter(|r| r.method == "PUT" && r.path().contains(what)).count();
    assert_eq!((puts("/manifests/"), puts("/blobs/uploads/")), (1, 2), "{:#?}", proxy.requests());

    // The last of them names a layer the archive lacks: the whole archive is refused, naming it.
    let other = Workspace::new();
    let path = other.path().join("many-broken.tar");
    std::fs::write(&path, archive("l/missing.tar")).unwrap();
    assert_refused(&other, &path, &["l/missing.tar"], 16 * MIB);
}
