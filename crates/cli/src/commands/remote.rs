//! The registry-only commands: `tags`, `catalog`, `tag` and `delete`. Each is
//! one call of hpn-registry's client, its result printed.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::anyhow;
use hpn_oci::Reference;

use super::{registry_client, registry_failure};
use crate::args::{CatalogArgs, DeleteArgs, TagArgs, TagsArgs};
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};

/// The prefix of the tags cosign and other tools store signatures and
/// attestations under (`sha256-<hex>.sig`, `.att`, `.sbom`).
const DIGEST_TAG_PREFIX: &str = "sha256-";

/// One tag a line, or with `--json` skopeo list-tags' `{"Repository", "Tags"}`.
pub async fn tags(args: TagsArgs, settings: &Settings) -> Result<ExitStatus, Failure> {
    let repository = reference(args.repository.strip_prefix("docker://").unwrap_or(&args.repository))?;
    let client = registry_client(settings)?;
    let page_size = args.page_size.map(|size| size as usize);
    let mut tags =
        client.list_tags(repository.registry(), repository.repository(), page_size).await.map_err(registry_failure)?;
    if args.omit_digest_tags {
        tags.retain(|tag| !tag.starts_with(DIGEST_TAG_PREFIX));
    }
    if settings.json {
        out!("{}", serde_json::json!({"Repository": repository.name(), "Tags": tags}));
    } else {
        for tag in tags {
            out!("{tag}");
        }
    }
    Ok(ExitStatus::Ok)
}

/// One repository a line, or `{"Registry", "Repositories"}` with `--json`.
pub async fn catalog(args: CatalogArgs, settings: &Settings) -> Result<ExitStatus, Failure> {
    let registry = registry_host(&args.registry);
    let client = registry_client(settings)?;
    let repositories = client
        .list_repositories(&registry, args.page_size.map(|size| size as usize))
        .await
        .map_err(registry_failure)?;
    if settings.json {
        out!("{}", serde_json::json!({"Registry": registry, "Repositories": repositories}));
    } else {
        for repository in repositories {
            out!("{repository}");
        }
    }
    Ok(ExitStatus::Ok)
}

/// Puts the image's manifest bytes under the new tag (crane tag).
pub async fn tag(args: TagArgs, settings: &Settings) -> Result<ExitStatus, Failure> {
    let image = reference(&args.image)?;
    let target = Reference::new(image.registry(), image.repository(), Some(&args.new_tag), None).map_err(|error| {
        Failure::new(ExitStatus::BadArguments, anyhow!("{:?} is not a valid tag: {error}", args.new_tag))
    })?;
    let client = registry_client(settings)?;
    let digest = client.tag(&image, &target).await.map_err(registry_failure)?;
    if settings.json {
        out!(
            "{}",
            serde_json::json!({"source": image.to_string(), "tagged": target.to_string(), "digest": digest.to_string()})
        );
    } else if !settings.quiet {
        out!("tagged {target} ({digest})");
    }
    Ok(ExitStatus::Ok)
}

/// Deletes the manifest the image names, after asking on a terminal.
pub async fn delete(args: DeleteArgs, settings: &Settings) -> Result<ExitStatus, Failure> {
    let image = reference(&args.image)?;
    let client = registry_client(settings)?;
    let digest = match image.digest() {
        Some(digest) => digest.clone(),
        None => {
            client
                .head_manifest(&image)
                .await
                .map_err(registry_failure)?
                .ok_or_else(|| {
                    Failure::new(ExitStatus::Runtime, anyhow!("image {image} was not found; nothing deleted"))
                })?
                .digest
        }
    };
    let pinned = image.with_digest_only(digest.clone());
    if !args.yes && !confirmed(&format!("delete {pinned} and every tag pointing at it?"))? {
        eprintln!("hpn: nothing deleted");
        return Ok(ExitStatus::General);
    }
    client.delete_manifest(&image, &digest).await.map_err(registry_failure)?;
    if settings.json {
        out!("{}", serde_json::json!({"deleted": pinned.to_string()}));
    } else if !settings.quiet {
        out!("deleted {pinned}");
    }
    Ok(ExitStatus::Ok)
}

/// Asks on the terminal; without one, refuses: deleting is not undone, so
/// a script must say `--yes`.
fn confirmed(question: &str) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            ExitStatus::BadArguments,
            anyhow!("{question} Not asked: stdin is not a terminal; pass --yes to delete without asking"),
        ));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|error| Failure::new(ExitStatus::General, anyhow!("cannot read the answer: {error}")))?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

fn reference(text: &str) -> Result<Reference, Failure> {
    text.parse::<Reference>()
        .map_err(|error| Failure::new(ExitStatus::BadArguments, anyhow!("{text:?} is not an image reference: {error}")))
}

/// A registry as users write it, also as a URL (`https://host/`), as docker
/// login accepts it.
pub(super) fn registry_host(text: &str) -> String {
    let text = text.trim();
    let text = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://")).unwrap_or(text);
    let host = text.split('/').next().unwrap_or(text);
    host.to_ascii_lowercase()
}
