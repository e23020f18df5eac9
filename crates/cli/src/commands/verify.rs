use std::path::{Path, PathBuf};

use anyhow::anyhow;
use hpn_archive::{ArchiveError, ArchiveReader, BILL_SIGNATURE, BillVerifier, Verification};
use hpn_transfer::ArchiveSource;
use indicatif::HumanBytes;

use crate::args::VerifyArgs;
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};

/// `hpn verify FILE...`: every archive re-hashed and its images' closures
/// checked, offline. Exit 0 only when everything holds; 6 when something is
/// damaged, as `hpn store verify`.
pub async fn run(args: VerifyArgs, settings: &Settings) -> Result<ExitStatus, Failure> {
    let (quiet, json) = (settings.quiet, settings.json);
    let key = args.key.as_deref().map(super::save::read_key(BillVerifier::from_pem)).transpose()?;
    tokio::task::spawn_blocking(move || verify_all(&args.files, key.as_ref(), quiet, json))
        .await
        .map_err(|join| Failure::new(ExitStatus::General, anyhow!("verify task failed: {join}")))
}

fn verify_all(files: &[PathBuf], key: Option<&BillVerifier>, quiet: bool, json: bool) -> ExitStatus {
    let mut statuses = Vec::with_capacity(files.len());
    let mut reports = Vec::with_capacity(files.len());
    let failed = |label: &Path, error: ArchiveError, statuses: &mut Vec<ExitStatus>| {
        eprintln!("hpn: verify {}: {error}", label.display());
        // A file that is no archive at all is bad input; one that is damaged (a blob
        // missing or cut short) fails as damage does below.
        let not_an_archive = matches!(error, ArchiveError::NotAnArchive { .. });
        statuses.push(if not_an_archive { ExitStatus::Runtime } else { ExitStatus::Filesystem });
        report(label, Err(&error.to_string()), quiet, json)
    };
    let mut readers = Vec::with_capacity(files.len());
    for file in files {
        match if file.as_os_str() == "-" { ArchiveReader::open_stdin() } else { ArchiveReader::open(file) } {
            Ok(reader) => {
                // Each volume's own bill is signed: checked before the set is joined.
                if let Some(Err(reason)) = key.map(|key| reader.check_bill_signature(key)) {
                    eprintln!("hpn: verify {}: {}: {reason}", file.display(), BILL_SIGNATURE);
                    statuses.push(ExitStatus::Filesystem);
                    reports.push(serde_json::json!({"archive": file.display().to_string(), "ok": false,
                                                     "error": format!("{BILL_SIGNATURE}: {reason}")}));
                }
                readers.push(reader);
            }
            Err(error) => reports.push(failed(file, error, &mut statuses)),
        }
    }
    // The volumes of a set are checked together, all present.
    for joined in ArchiveReader::join_volumes(readers) {
        let reader = match joined {
            Ok(reader) => reader,
            Err(error) => {
                reports.push(failed(Path::new("volume set"), error, &mut statuses));
                continue;
            }
        };
        let file = reader.path();
        let verification = reader.verify();
        let attachments = reader.images().iter().filter(|image| ArchiveSource::is_attachment_entry(image)).count();
        for problem in &verification.problems {
            let digest = problem.digest.as_ref().map(|digest| format!(" ({digest})")).unwrap_or_default();
            eprintln!("hpn: verify {}: {}{digest}: {}", file.display(), problem.place, problem.reason);
        }
        statuses.push(if verification.is_ok() { ExitStatus::Ok } else { ExitStatus::Filesystem });
        reports.push(report(file, Ok((&verification, attachments)), quiet, json));
    }
    if json {
        crate::print_line(serde_json::Value::from(reports));
    }
    ExitStatus::combine(statuses.into_iter().filter(|status| *status != ExitStatus::Ok))
}

/// One archive's line (printed unless quiet or JSON) and its JSON entry; of
/// the entries its verification checked, `attachments` are attachments
/// (signatures, SBOMs, attestations), counted apart from the images.
fn report(file: &Path, result: Result<(&Verification, usize), &str>, quiet: bool, json: bool) -> serde_json::Value {
    let archive = file.display().to_string();
    match result {
        Ok((verification, attachments)) => {
            let images = verification.images - attachments;
            if !quiet && !json {
                let absent = match verification.platforms_absent {
                    0 => String::new(),
                    absent => format!(" ({absent} platform(s) an index lists were not saved)"),
                };
                let elsewhere = match verification.expected_elsewhere {
                    0 => String::new(),
                    count => format!(" (differential: {count} layer(s) expected from its base, not carried)"),
                };
                let attached = match attachments {
                    0 => String::new(),
                    count => format!(" with {count} attachment(s)"),
                };
                out!(
                    "{archive}: {images} image(s){attached}, {} blob(s), {} verified{absent}{elsewhere}; {}",
                    verification.blobs,
                    HumanBytes(verification.bytes),
                    match verification.problems.len() {
                        0 => "ok".to_owned(),
                        count => format!("{count} problem(s)"),
                    }
                );
            }
            let problems: Vec<serde_json::Value> = verification
                .problems
                .iter()
                .map(|problem| {
                    serde_json::json!({"place": problem.place, "reason": problem.reason,
                                       "digest": problem.digest.as_ref().map(ToString::to_string)})
                })
                .collect();
            serde_json::json!({"archive": archive, "ok": verification.is_ok(), "images": images,
                               "attachments": attachments,
                               "blobs": verification.blobs, "bytes": verification.bytes,
                               "platforms_absent": verification.platforms_absent,
                               "expected_elsewhere": verification.expected_elsewhere, "problems": problems})
        }
        Err(error) => serde_json::json!({"archive": archive, "ok": false, "error": error}),
    }
}
