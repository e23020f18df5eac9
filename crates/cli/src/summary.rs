use std::path::PathBuf;
use std::time::Duration;

use hpn_transfer::{CopyOutcome, LeftAttachment, LeftReason};
use indicatif::HumanBytes;
use serde::Serialize;

use crate::exit::ExitStatus;
use crate::image_list::Rejected;
use crate::progress::short_name;

/// How one requested image ended.
#[derive(Debug)]
pub struct ImageResult {
    pub image: hpn_oci::Reference,
    pub result: Result<CopyOutcome, ImageFailure>,
}

#[derive(Debug, Clone)]
pub struct ImageFailure {
    pub status: ExitStatus,
    pub message: String,
}

/// The closing report of a command: what worked, what failed and why, bytes
/// fetched against bytes reused, the archives written, and the wall time.
#[derive(Debug)]
pub struct Summary {
    pub command: &'static str,
    pub images: Vec<ImageResult>,
    pub rejected: Vec<Rejected>,
    /// Inputs that could not be used at all (an unreadable archive, an unnamed image), with why.
    pub unusable: Vec<(String, ImageFailure)>,
    pub archives: Vec<(PathBuf, u64)>,
    pub elapsed: Duration,
    /// Set for `--dry-run`: what the images would go into; nothing was written.
    pub dry_run: Option<String>,
    /// Per image, in order, the name it gets at the destination, where that differs by image
    /// (push, copy); empty otherwise.
    pub destinations: Vec<hpn_oci::Reference>,
    /// Per image, in order, the mirror location it was read from when a mirror served it.
    pub served_from: Vec<Option<hpn_oci::Reference>>,
    /// The archive went to stdout (`-o -`), so the summary goes to stderr.
    pub stdout_is_output: bool,
    /// `hpn save --since`: what the bundle leaves to its base.
    pub differential: Option<hpn_transfer::Differential>,
    /// `hpn save --dry-run --split`: the volumes it would write.
    pub volume_plan: Option<VolumePlan>,
}

/// The volumes `hpn save --split` would write, as a dry run planned them.
#[derive(Debug)]
pub struct VolumePlan {
    /// `--split`: no volume file may be larger.
    pub volume_size: u64,
    /// Whether the volumes are compressed as a whole (their sizes are the tar's, before that).
    pub compressed: bool,
    pub volumes: Vec<hpn_archive::VolumeOutline>,
    /// Sizes the plan could only estimate.
    pub estimated: Vec<hpn_transfer::EstimatedCopy>,
    /// Whether the save would look for attachments, which a dry run does
    /// not: the plan then leaves their blobs out.
    pub attachments_left_out: bool,
}

impl Summary {
    pub fn exit_status(&self) -> ExitStatus {
        let image_failures = self.images.iter().filter_map(|image| image.result.as_ref().err().map(|f| f.status));
        let rejected = self.rejected.iter().map(|_| ExitStatus::BadArguments);
        let unusable = self.unusable.iter().map(|(_, failure)| failure.status);
        ExitStatus::combine(image_failures.chain(rejected).chain(unusable))
    }

    /// Failures go to stderr always; the summary to stdout unless quiet.
    pub fn print(&self, quiet: bool, json: bool) {
        for rejected in &self.rejected {
            eprintln!(
                "hpn: {}: {:?} is not a valid image reference: {}",
                rejected.origin, rejected.text, rejected.reason
            );
        }
        for (input, failure) in &self.unusable {
            eprintln!("hpn: {} {input}: {}", self.command, failure.message);
        }
        for image in &self.images {
            if let Err(failure) = &image.result {
                eprintln!("hpn: {} {}: {}", self.command, image.image, failure.message);
            }
        }
        if json {
            crate::print_line(serde_json::to_string_pretty(&self.to_json()).expect("the summary serializes"));
        } else if !quiet {
            let text = self.human();
            if self.stdout_is_output {
                eprintln!("{text}");
            } else {
                crate::print_line(text);
            }
        }
    }

    fn totals(&self) -> (u64, u64) {
        self.images.iter().filter_map(|image| image.result.as_ref().ok()).fold((0, 0), |(fetched, reused), outcome| {
            (fetched + outcome.bytes_transferred, reused + outcome.bytes_present)
        })
    }

    fn human(&self) -> String {
        if let Some(into) = &self.dry_run {
            return self.human_plan(into);
        }
        let ok = self.images.iter().filter(|image| image.result.is_ok()).count();
        let failed = self.images.len() - ok + self.rejected.len() + self.unusable.len();
        let (fetched, reused) = self.totals();
        let attachments: usize = self
            .images
            .iter()
            .filter_map(|image| image.result.as_ref().ok())
            .map(|outcome| outcome.attachments.len())
            .sum();
        let carried = if attachments > 0 {
            format!(", {attachments} attachment(s) carried (signatures, SBOMs, attestations)")
        } else {
            String::new()
        };
        let mut text = format!(
            "{}: {ok} image(s) ok, {failed} failed{carried}; {} fetched, {} reused; {:.1}s",
            self.command,
            HumanBytes(fetched),
            HumanBytes(reused),
            self.elapsed.as_secs_f64()
        );
        for image in &self.images {
            let Ok(outcome) = &image.result else { continue };
            for reason in [LeftReason::IndexNotCopied, LeftReason::DestinationCannotKeep] {
                let left = outcome.attachments_left.iter().filter(|left| left.reason == reason).count();
                if left > 0 {
                    text.push_str(&format!(
                        "\n{}: {left} attachment(s) left behind: {}",
                        image.image,
                        left_behind_advice(reason)
                    ));
                }
            }
        }
        for (path, size) in &self.archives {
            text.push_str(&format!("\nwrote {} ({})", path.display(), HumanBytes(*size)));
        }
        if let Some(differential) = &self.differential {
            text.push('\n');
            text.push_str(&differential_text(differential));
        }
        text
    }

    /// A dry run's report: per image where it would go and what would move.
    fn human_plan(&self, into: &str) -> String {
        let ok = self.images.iter().filter(|image| image.result.is_ok()).count();
        let failed = self.images.len() - ok + self.rejected.len() + self.unusable.len();
        let (fetched, reused) = self.totals();
        let mut text = format!(
            "{} --dry-run, nothing written: {ok} image(s) into {into}, {failed} failed; {} to copy, {} already there",
            self.command,
            HumanBytes(fetched),
            HumanBytes(reused)
        );
        for (position, image) in self.images.iter().enumerate() {
            let Ok(outcome) = &image.result else { continue };
            let target = self.destinations.get(position).map(|name| format!(" → {name}")).unwrap_or_default();
            text.push_str(&format!(
                "
  {}{target} ({}): {} layer(s) to copy ({}), {} already there ({})",
                image.image,
                outcome.digest.short(),
                outcome.blobs_transferred,
                HumanBytes(outcome.bytes_transferred),
                outcome.blobs_present,
                HumanBytes(outcome.bytes_present)
            ));
        }
        match &self.volume_plan {
            Some(plan) => text.push_str(&volume_plan_text(plan)),
            None => {
                for (path, _) in &self.archives {
                    text.push_str(&format!(
                        "
would write {}",
                        path.display()
                    ));
                }
            }
        }
        text
    }

    fn to_json(&self) -> JsonSummary<'_> {
        let (fetched, reused) = self.totals();
        JsonSummary {
            command: self.command,
            ok: self.images.iter().filter(|image| image.result.is_ok()).count(),
            failed: self.images.iter().filter(|image| image.result.is_err()).count()
                + self.rejected.len()
                + self.unusable.len(),
            bytes_fetched: fetched,
            bytes_reused: reused,
            seconds: self.elapsed.as_secs_f64(),
            exit_code: self.exit_status() as u8,
            dry_run: self.dry_run.is_some(),
            images: self
                .images
                .iter()
                .enumerate()
                .map(|(position, image)| match &image.result {
                    Ok(outcome) => JsonImage {
                        reference: image.image.to_string(),
                        destination: self.destinations.get(position).map(ToString::to_string),
                        source_location: self.served_from.get(position).cloned().flatten().map(|at| at.to_string()),
                        name: short_name(&image.image),
                        status: "ok",
                        digest: Some(outcome.digest.to_string()),
                        platforms: outcome.platforms.iter().map(ToString::to_string).collect(),
                        bytes_fetched: outcome.bytes_transferred,
                        bytes_reused: outcome.bytes_present,
                        attachments: outcome.attachments.iter().map(JsonAttachment::from).collect(),
                        attachments_left_behind: outcome
                            .attachments_left
                            .iter()
                            .map(JsonLeftAttachment::from)
                            .collect(),
                        error: None,
                    },
                    Err(failure) => JsonImage {
                        reference: image.image.to_string(),
                        destination: self.destinations.get(position).map(ToString::to_string),
                        source_location: None,
                        name: short_name(&image.image),
                        status: "failed",
                        digest: None,
                        platforms: Vec::new(),
                        bytes_fetched: 0,
                        bytes_reused: 0,
                        attachments: Vec::new(),
                        attachments_left_behind: Vec::new(),
                        error: Some(failure.message.clone()),
                    },
                })
                .collect(),
            unusable: self
                .unusable
                .iter()
                .map(|(input, failure)| JsonRejected { origin: input, text: "", reason: &failure.message })
                .collect(),
            rejected: self
                .rejected
                .iter()
                .map(|rejected| JsonRejected {
                    origin: &rejected.origin,
                    text: &rejected.text,
                    reason: &rejected.reason,
                })
                .collect(),
            archives: self
                .archives
                .iter()
                .map(|(path, size)| JsonArchive { path: path.display().to_string(), bytes: *size })
                .collect(),
            volume_plan: self.volume_plan.as_ref().map(JsonVolumePlan::from),
            differential: self.differential.as_ref().map(|differential| JsonDifferential {
                base_blobs: differential.left_to_base.blobs,
                bytes_saved: differential.left_to_base.bytes,
                unchanged: differential.unchanged.iter().map(ToString::to_string).collect(),
                need_base: differential.left_to_base.images.clone(),
                docker_loadable: differential.left_to_base.images.is_empty(),
            }),
        }
    }
}

#[derive(Serialize)]
struct JsonSummary<'a> {
    command: &'a str,
    ok: usize,
    failed: usize,
    bytes_fetched: u64,
    bytes_reused: u64,
    seconds: f64,
    exit_code: u8,
    /// `--dry-run`: the images' bytes are what would move; nothing was written.
    dry_run: bool,
    images: Vec<JsonImage>,
    rejected: Vec<JsonRejected<'a>>,
    unusable: Vec<JsonRejected<'a>>,
    archives: Vec<JsonArchive>,
    #[serde(skip_serializing_if = "Option::is_none")]
    volume_plan: Option<JsonVolumePlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    differential: Option<JsonDifferential>,
}

/// The human lines of a volume plan: each volume, its images and parts, and
/// what in it is only an estimate.
fn volume_plan_text(plan: &VolumePlan) -> String {
    let mut text = format!(
        "\nwould write {} volume(s) of at most {} ({} bytes){}:",
        plan.volumes.len(),
        HumanBytes(plan.volume_size),
        plan.volume_size,
        if plan.compressed { "; sizes are of each tar before it is compressed" } else { "" }
    );
    for volume in &plan.volumes {
        let images = if volume.images.is_empty() {
            "no whole image (only hpn loads it, with the rest of the set)".to_owned()
        } else {
            volume.images.join(", ")
        };
        text.push_str(&format!(
            "\n  {}: {} ({} bytes); {} blob(s) whole ({}); images: {images}",
            volume.path.display(),
            HumanBytes(volume.tar_size),
            volume.tar_size,
            volume.blobs,
            HumanBytes(volume.blob_bytes),
        ));
        for part in &volume.parts {
            text.push_str(&format!(
                "\n    part {}/{} of {} ({}): {}",
                part.number,
                part.count,
                part.blob.short(),
                HumanBytes(part.blob_size),
                HumanBytes(part.size)
            ));
        }
    }
    if !plan.estimated.is_empty() {
        let layers: Vec<String> = plan
            .estimated
            .iter()
            .map(|copy| {
                format!("{} ({} → ~{})", copy.layer.short(), HumanBytes(copy.layer_size), HumanBytes(copy.assumed_size))
            })
            .collect();
        text.push_str(&format!(
            "\nestimated: the uncompressed copies of {} zstd layer(s), which the archive carries for docker before \
             23, have no size in any descriptor and are not in the store; the plan assumes {}× the compressed size: \
             {}. The real copies may be larger or smaller, so the real volumes may differ in size and number, and \
             images may fall into other volumes",
            plan.estimated.len(),
            hpn_transfer::ZSTD_COPY_ESTIMATE_RATIO,
            layers.join(", ")
        ));
    }
    if plan.attachments_left_out {
        text.push_str(
            "\nnot counted: signatures, SBOMs and attestations, which a dry run does not look for; the save \
             carries them with their images, so volumes may come out a little larger (with --no-referrers the \
             plan is what the save writes)",
        );
    }
    text
}

/// `hpn save --dry-run --split`: the volumes it would write.
#[derive(Serialize)]
struct JsonVolumePlan {
    /// `--split`, in bytes.
    volume_size: u64,
    /// Whether each volume is compressed as a whole; `bytes` are then its tar's before that.
    compressed: bool,
    volumes: Vec<JsonVolume>,
    /// Sizes only estimated: with other true sizes the real volumes differ.
    estimated: Vec<JsonEstimatedCopy>,
    /// Attachments the save would carry are not in the plan.
    attachments_left_out: bool,
}

#[derive(Serialize)]
struct JsonVolume {
    path: String,
    /// Its size as written uncompressed, headers and lists of contents included.
    bytes: u64,
    /// Images whole in it: each loads from this volume alone.
    images: Vec<String>,
    blobs: usize,
    blob_bytes: u64,
    parts: Vec<JsonPart>,
}

#[derive(Serialize)]
struct JsonPart {
    blob: String,
    blob_size: u64,
    number: u32,
    count: u32,
    bytes: u64,
}

#[derive(Serialize)]
struct JsonEstimatedCopy {
    /// The zstd layer.
    layer: String,
    layer_size: u64,
    /// Its uncompressed copy's digest (the DiffID).
    diff_id: String,
    /// The size the plan assumed for that copy.
    assumed_size: u64,
}

impl From<&VolumePlan> for JsonVolumePlan {
    fn from(plan: &VolumePlan) -> Self {
        Self {
            volume_size: plan.volume_size,
            compressed: plan.compressed,
            volumes: plan
                .volumes
                .iter()
                .map(|volume| JsonVolume {
                    path: volume.path.display().to_string(),
                    bytes: volume.tar_size,
                    images: volume.images.clone(),
                    blobs: volume.blobs,
                    blob_bytes: volume.blob_bytes,
                    parts: volume
                        .parts
                        .iter()
                        .map(|part| JsonPart {
                            blob: part.blob.to_string(),
                            blob_size: part.blob_size,
                            number: part.number,
                            count: part.count,
                            bytes: part.size,
                        })
                        .collect(),
                })
                .collect(),
            estimated: plan
                .estimated
                .iter()
                .map(|copy| JsonEstimatedCopy {
                    layer: copy.layer.to_string(),
                    layer_size: copy.layer_size,
                    diff_id: copy.diff_id.to_string(),
                    assumed_size: copy.assumed_size,
                })
                .collect(),
            attachments_left_out: plan.attachments_left_out,
        }
    }
}

/// What a differential bundle leaves to its base.
#[derive(Serialize)]
struct JsonDifferential {
    /// Layers not carried: expected at the far side.
    base_blobs: usize,
    /// Their bytes.
    bytes_saved: u64,
    /// Images the base has under the same name: not shipped.
    unchanged: Vec<String>,
    /// Images that need base layers: left out of manifest.json, so not loadable by docker alone.
    need_base: Vec<String>,
    /// Whether `docker load` of the bundle alone loads every image it names.
    docker_loadable: bool,
}

/// The human lines about a differential bundle: what it saved, and that
/// docker cannot load alone what needs its base.
fn differential_text(differential: &hpn_transfer::Differential) -> String {
    let left = &differential.left_to_base;
    let mut text = format!(
        "differential: {} layer(s) ({}) left to the base, {} image(s) unchanged there and not shipped",
        left.blobs,
        HumanBytes(left.bytes),
        differential.unchanged.len()
    );
    if !left.images.is_empty() {
        text.push_str(&format!(
            "\nnot loadable alone: {} need(s) layers of the base, so docker load and podman load of this bundle \
             skip them (manifest.json leaves them out); hpn load it into a store that holds the base, or hpn push \
             it to a registry that does",
            left.images.join(", ")
        ));
    }
    text
}

#[derive(Serialize)]
struct JsonImage {
    reference: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<String>,
    /// The mirror location the image was read from, when a mirror served it.
    #[serde(skip_serializing_if = "Option::is_none")]
    source_location: Option<String>,
    name: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    platforms: Vec<String>,
    bytes_fetched: u64,
    bytes_reused: u64,
    /// Signatures, SBOMs and attestations carried with the image.
    attachments: Vec<JsonAttachment>,
    /// Attachments the source has that did not travel, with why.
    attachments_left_behind: Vec<JsonLeftAttachment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct JsonLeftAttachment {
    kind: &'static str,
    artifact_type: Option<String>,
    digest: String,
    subject: String,
    /// index-not-copied or destination-cannot-keep.
    reason: &'static str,
    advice: &'static str,
}

impl From<&LeftAttachment> for JsonLeftAttachment {
    fn from(left: &LeftAttachment) -> Self {
        Self {
            kind: left.kind.as_str(),
            artifact_type: left.artifact_type.clone(),
            digest: left.digest.to_string(),
            subject: left.subject.to_string(),
            reason: left.reason.as_str(),
            advice: left_behind_advice(left.reason),
        }
    }
}

/// Why attachments stayed behind, and what the user can do.
fn left_behind_advice(reason: LeftReason) -> &'static str {
    match reason {
        LeftReason::IndexNotCopied => {
            "they are attached to the multi-platform index, which went as one platform's manifest; \
             copy it with --all-platforms to keep them"
        }
        LeftReason::DestinationCannotKeep => {
            "archives do not carry signatures, SBOMs or attestations yet; `hpn pull` them into the store \
             and `hpn push` from it, or `hpn copy` registry to registry"
        }
    }
}

#[derive(Serialize)]
struct JsonAttachment {
    /// signature, attestation, sbom (cosign's tags) or referrer (OCI 1.1 `subject`).
    kind: &'static str,
    artifact_type: Option<String>,
    digest: String,
    subject: String,
}

impl From<&hpn_transfer::CopiedAttachment> for JsonAttachment {
    fn from(attachment: &hpn_transfer::CopiedAttachment) -> Self {
        Self {
            kind: attachment.kind.as_str(),
            artifact_type: attachment.artifact_type.clone(),
            digest: attachment.digest.to_string(),
            subject: attachment.subject.to_string(),
        }
    }
}

#[derive(Serialize)]
struct JsonRejected<'a> {
    origin: &'a str,
    text: &'a str,
    reason: &'a str,
}

#[derive(Serialize)]
struct JsonArchive {
    path: String,
    bytes: u64,
}
