use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use anyhow::anyhow;
use hpn_oci::{Digest, Reference};
use hpn_store::{ImageUsage, Store, StoreError};
use hpn_transfer::AttachmentKind;
use hpn_transfer::attachments::parse_tag;
use indicatif::HumanBytes;

use crate::args::StoreCommand;
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};

/// `hpn store ls | rm | verify | gc | inventory`: file I/O and hashing, so on the
/// blocking pool. The store must exist: looking at a mistyped `--store`
/// must not create one there.
pub async fn run(command: StoreCommand, settings: &Settings) -> Result<ExitStatus, Failure> {
    let (root, durability) = (settings.store_root.clone(), settings.durability);
    let (quiet, json) = (settings.quiet, settings.json);
    tokio::task::spawn_blocking(move || {
        if matches!(command, StoreCommand::Ls) && !root.exists() {
            // A store nothing was pulled into yet holds no images; listing it creates none.
            eprintln!("hpn: there is no store at {} yet", root.display());
            if json {
                crate::print_line(serde_json::Value::Array(Vec::new()));
            }
            return Ok(ExitStatus::Ok);
        }
        let store = Store::open_existing(&root, durability).map_err(filesystem)?;
        match command {
            StoreCommand::Ls => list(&store, json),
            StoreCommand::Rm { refs } => remove(&store, &refs, quiet, json),
            StoreCommand::Verify => verify(&store, quiet, json),
            StoreCommand::Gc => collect_garbage(&store, quiet, json),
            StoreCommand::Inventory { output } => inventory(&store, output.as_deref(), quiet, json),
        }
    })
    .await
    .map_err(|join| Failure::new(ExitStatus::General, anyhow!("store task failed: {join}")))?
}

fn filesystem(error: StoreError) -> Failure {
    Failure::new(ExitStatus::Filesystem, error)
}

/// A ref the store keeps for an attachment (a cosign tag, a fallback index).
struct StoredAttachment {
    usage: ImageUsage,
    repository: String,
    subject: Digest,
    /// `None` for a fallback index, which lists the subject's OCI referrers.
    kind: Option<AttachmentKind>,
}

impl StoredAttachment {
    /// The ref `usage` as an attachment's, if its tag is one (`sha256-<hex>[.sig|.att|.sbom]`).
    fn of(usage: &ImageUsage) -> Option<Self> {
        let (repository, tag) = usage.name.rsplit_once(':')?;
        let (subject, kind) = parse_tag(tag)?;
        Some(Self { repository: repository.to_owned(), subject, kind, usage: usage.clone() })
    }

    fn kind(&self) -> &'static str {
        self.kind.map_or("referrers", AttachmentKind::as_str)
    }
}

/// Images with their attachments under them: each attachment ref goes with
/// the image of its repository it is attached to, else (attached to a
/// platform manifest, or to another attachment) with the first image of
/// its repository; one whose repository holds no image is listed alone.
fn list(store: &Store, json: bool) -> Result<ExitStatus, Failure> {
    let mut images = Vec::new();
    let mut attachments = Vec::new();
    for usage in store.usage().map_err(filesystem)? {
        match StoredAttachment::of(&usage) {
            Some(attachment) => attachments.push(attachment),
            None => images.push((usage, Vec::new())),
        }
    }
    let repository_of =
        |name: &str| name.parse::<Reference>().map(|reference| reference.name()).unwrap_or_else(|_| name.to_owned());
    let mut orphans = Vec::new();
    for attachment in attachments {
        let same_repository: Vec<usize> = (0..images.len())
            .filter(|position| repository_of(&images[*position].0.name) == attachment.repository)
            .collect();
        let owner = same_repository
            .iter()
            .copied()
            .find(|position| images[*position].0.descriptor.digest == attachment.subject)
            .or_else(|| same_repository.first().copied());
        match owner {
            Some(position) => images[position].1.push(attachment),
            None => orphans.push(attachment),
        }
    }
    if json {
        let describe = |attachment: &StoredAttachment| {
            serde_json::json!({"name": attachment.usage.name, "kind": attachment.kind(),
                               "digest": attachment.usage.descriptor.digest.to_string(),
                               "subject": attachment.subject.to_string(), "size": attachment.usage.size})
        };
        let mut entries: Vec<serde_json::Value> = images
            .iter()
            .map(|(image, attached)| {
                serde_json::json!({"name": image.name, "digest": image.descriptor.digest.to_string(),
                                   "media_type": image.descriptor.media_type, "size": image.size,
                                   "unique_size": image.unique,
                                   "attachments": attached.iter().map(describe).collect::<Vec<_>>()})
            })
            .collect();
        entries.extend(orphans.iter().map(describe));
        crate::print_line(serde_json::Value::from(entries));
    } else {
        for (image, attached) in &images {
            out!(
                "{}\t{}\t{}\t{} unique",
                image.name,
                image.descriptor.digest,
                HumanBytes(image.size),
                HumanBytes(image.unique)
            );
            for attachment in attached {
                out!(
                    "  {} of {}\t{}\t{}",
                    attachment.kind(),
                    attachment.subject.short(),
                    attachment.usage.descriptor.digest,
                    HumanBytes(attachment.usage.size)
                );
            }
        }
        for attachment in &orphans {
            out!(
                "{}\t{}\t{}\t{} of a manifest no image here names",
                attachment.usage.name,
                attachment.usage.descriptor.digest,
                HumanBytes(attachment.usage.size),
                attachment.kind()
            );
        }
    }
    Ok(ExitStatus::Ok)
}

/// Each REF is taken as the store names it, else as a reference to
/// normalize (`nginx:1` is `docker.io/library/nginx:1`). All go, or none
/// when one matches nothing (exit 1, naming it).
fn remove(store: &Store, refs: &[String], quiet: bool, json: bool) -> Result<ExitStatus, Failure> {
    let stored: HashSet<String> = store.refs().map_err(filesystem)?.into_iter().map(|(name, _)| name).collect();
    let names: Vec<String> = refs
        .iter()
        .map(|given| match given.parse::<Reference>() {
            Ok(reference) if !stored.contains(given) && stored.contains(&reference.to_string()) => {
                reference.to_string()
            }
            _ => given.clone(),
        })
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    // The signatures, SBOMs and attestations of what goes go with it.
    let orphans = hpn_transfer::orphaned_attachment_refs(store, &names).map_err(|error| {
        let status = ExitStatus::of(&error);
        Failure::new(status, error)
    })?;
    let names: Vec<&str> = names.into_iter().chain(orphans.iter().map(String::as_str)).collect();
    store.remove_refs(&names).map_err(|error| match error {
        StoreError::RefsNotFound { .. } => Failure::new(ExitStatus::General, error),
        other => filesystem(other),
    })?;
    if json {
        crate::print_line(serde_json::json!({"store": store.root().display().to_string(), "removed": names}));
    } else if !quiet {
        for name in &names {
            out!("removed {name}");
        }
        out!("blobs no other image needs stay until `hpn store gc`");
    }
    Ok(ExitStatus::Ok)
}

/// Exit 6 when anything is damaged: the store is files on disk.
fn verify(store: &Store, quiet: bool, json: bool) -> Result<ExitStatus, Failure> {
    let root = store.root().display().to_string();
    let report = store.verify().map_err(filesystem)?;
    for problem in &report.problems {
        eprintln!("hpn: store {root}: {problem}");
    }
    if json {
        let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        crate::print_line(
            serde_json::json!({"store": root, "ok": report.is_ok(), "blobs_checked": report.blobs_checked,
            "bytes_checked": report.bytes_checked, "images_checked": report.refs_checked, "problems": problems}),
        );
    } else if !quiet {
        out!(
            "store {root}: {} image(s), {} blob(s), {} checked; {} problem(s)",
            report.refs_checked,
            report.blobs_checked,
            HumanBytes(report.bytes_checked),
            report.problems.len()
        );
    }
    Ok(if report.is_ok() { ExitStatus::Ok } else { ExitStatus::Filesystem })
}

fn collect_garbage(store: &Store, quiet: bool, json: bool) -> Result<ExitStatus, Failure> {
    let root = store.root().display().to_string();
    let report = store.gc().map_err(filesystem)?;
    if json {
        crate::print_line(serde_json::json!({"store": root, "blobs_kept": report.blobs_kept,
            "blobs_removed": report.blobs_removed, "bytes_freed": report.bytes_freed,
            "temp_files_removed": report.temp_files_removed}));
    } else if !quiet {
        out!(
            "store {root}: removed {} blob(s), freed {}, kept {}",
            report.blobs_removed,
            HumanBytes(report.bytes_freed),
            report.blobs_kept
        );
    }
    Ok(ExitStatus::Ok)
}

/// The inventory to a file (temp beside it, then rename: a file carried off
/// the site is whole or absent) or, without one, to stdout, where then
/// nothing else is printed.
fn inventory(store: &Store, output: Option<&Path>, quiet: bool, json: bool) -> Result<ExitStatus, Failure> {
    let inventory = store.inventory().map_err(filesystem)?;
    let bytes = inventory.to_json();
    let Some(path) = output.filter(|path| *path != Path::new("-")) else {
        if json {
            return Err(Failure::new(
                ExitStatus::BadArguments,
                anyhow!("the inventory goes to stdout, where --json would print too; name a file with -o"),
            ));
        }
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&bytes).and_then(|()| stdout.write_all(b"\n")).and_then(|()| stdout.flush()).map_err(
            |error| Failure::new(ExitStatus::Filesystem, anyhow!("writing the inventory to stdout: {error}")),
        )?;
        return Ok(ExitStatus::Ok);
    };
    write_replacing(path, &bytes).map_err(|error| {
        Failure::new(ExitStatus::Filesystem, anyhow!("writing the inventory to {}: {error}", path.display()))
    })?;
    let bytes_held: u64 = inventory.blobs.iter().map(|blob| blob.size).sum();
    if json {
        crate::print_line(serde_json::json!({"store": store.root().display().to_string(), "inventory": inventory.id,
            "file": path.display().to_string(), "images": inventory.images.len(), "blobs": inventory.blobs.len(),
            "bytes": bytes_held}));
    } else if !quiet {
        out!(
            "store {}: inventory {} ({} image(s), {} blob(s), {}) written to {}",
            store.root().display(),
            inventory.id,
            inventory.images.len(),
            inventory.blobs.len(),
            HumanBytes(bytes_held),
            path.display()
        );
    }
    Ok(ExitStatus::Ok)
}

fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|error| error.error)?;
    Ok(())
}
