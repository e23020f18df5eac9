use std::path::PathBuf;
use std::time::Duration;

use hpn_transfer::CopyOutcome;
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
    /// The archive went to stdout (`-o -`), so the summary goes to stderr.
    pub stdout_is_output: bool,
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
        let ok = self.images.iter().filter(|image| image.result.is_ok()).count();
        let failed = self.images.len() - ok + self.rejected.len() + self.unusable.len();
        let (fetched, reused) = self.totals();
        let mut text = format!(
            "{}: {ok} image(s) ok, {failed} failed; {} fetched, {} reused; {:.1}s",
            self.command,
            HumanBytes(fetched),
            HumanBytes(reused),
            self.elapsed.as_secs_f64()
        );
        for (path, size) in &self.archives {
            text.push_str(&format!("\nwrote {} ({})", path.display(), HumanBytes(*size)));
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
            images: self
                .images
                .iter()
                .map(|image| match &image.result {
                    Ok(outcome) => JsonImage {
                        reference: image.image.to_string(),
                        name: short_name(&image.image),
                        status: "ok",
                        digest: Some(outcome.digest.to_string()),
                        platforms: outcome.platforms.iter().map(ToString::to_string).collect(),
                        bytes_fetched: outcome.bytes_transferred,
                        bytes_reused: outcome.bytes_present,
                        error: None,
                    },
                    Err(failure) => JsonImage {
                        reference: image.image.to_string(),
                        name: short_name(&image.image),
                        status: "failed",
                        digest: None,
                        platforms: Vec::new(),
                        bytes_fetched: 0,
                        bytes_reused: 0,
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
    images: Vec<JsonImage>,
    rejected: Vec<JsonRejected<'a>>,
    unusable: Vec<JsonRejected<'a>>,
    archives: Vec<JsonArchive>,
}

#[derive(Serialize)]
struct JsonImage {
    reference: String,
    name: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    platforms: Vec<String>,
    bytes_fetched: u64,
    bytes_reused: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
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
