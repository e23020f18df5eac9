use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hpn_oci::{Descriptor, Reference};
use hpn_transfer::{BlobOrigin, CopyOutcome, Reporter, TransferError};
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether stderr gets colour: only on a terminal, and never with `NO_COLOR`
/// set to anything but the empty string (no-color.org), so logs and CI
/// files carry no escape codes.
pub fn colour_on_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// Picks how progress is shown: bars on a terminal, one line per image when
/// stderr is a pipe or a file (CI logs), nothing with --quiet or --json.
pub fn reporter(quiet: bool, json: bool) -> Box<dyn Reporter> {
    if quiet || json {
        Box::new(hpn_transfer::NoReport)
    } else if std::io::stderr().is_terminal() {
        Box::new(BarReporter::new())
    } else {
        Box::new(LineReporter)
    }
}

/// One bar per image in progress: bytes, rate and ETA.
struct BarReporter {
    multi: MultiProgress,
    style: ProgressStyle,
    bars: Mutex<HashMap<Reference, ProgressBar>>,
}

impl BarReporter {
    fn new() -> Self {
        let style = ProgressStyle::with_template(
            "{spinner:.green} {prefix:<40!} {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta:>3} {msg}",
        )
        .expect("the template is valid")
        .progress_chars("=> ");
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)),
            style,
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn with_bar(&self, image: &Reference, work: impl FnOnce(&ProgressBar)) {
        let bars = self.bars.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(bar) = bars.get(image) {
            work(bar);
        }
    }
}

impl Reporter for BarReporter {
    fn image_started(&self, image: &Reference) {
        let bar = self.multi.add(ProgressBar::new(0).with_style(self.style.clone()).with_prefix(short_name(image)));
        bar.set_message("resolving");
        bar.enable_steady_tick(Duration::from_millis(200));
        self.bars.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(image.clone(), bar);
    }

    fn image_planned(&self, image: &Reference, blobs: usize, bytes: u64) {
        self.with_bar(image, |bar| {
            bar.set_length(bytes);
            bar.set_message(format!("{blobs} layers"));
        });
    }

    fn bytes_transferred(&self, image: &Reference, bytes: u64) {
        self.with_bar(image, |bar| bar.inc(bytes));
    }

    fn blob_done(&self, image: &Reference, blob: &Descriptor, origin: BlobOrigin) {
        if origin == BlobOrigin::AlreadyPresent {
            self.with_bar(image, |bar| bar.inc(blob.size));
        }
    }

    fn image_finished(&self, image: &Reference, result: Result<&CopyOutcome, &TransferError>) {
        let bar = self.bars.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(image);
        if let Some(bar) = bar {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        let _ = self.multi.println(outcome_line(image, result));
    }
}

/// Plain lines for logs: one when an image is done.
struct LineReporter;

impl Reporter for LineReporter {
    fn image_finished(&self, image: &Reference, result: Result<&CopyOutcome, &TransferError>) {
        eprintln!("{}", outcome_line(image, result));
    }
}

fn outcome_line(image: &Reference, result: Result<&CopyOutcome, &TransferError>) -> String {
    match result {
        Ok(outcome) => format!(
            "done    {} {} ({} fetched, {} already present)",
            short_name(image),
            outcome.digest.short(),
            HumanBytes(outcome.bytes_transferred),
            HumanBytes(outcome.bytes_present)
        ),
        Err(_) => format!("failed  {} (see the summary)", short_name(image)),
    }
}

/// Docker's familiar form where it applies: `nginx:latest`, `host:5000/app:1`.
pub fn short_name(image: &Reference) -> String {
    match (image.familiar_tagged(), image.digest()) {
        (Some(tagged), _) => tagged,
        (None, Some(digest)) => format!("{}@{}", image.familiar_name(), digest),
        (None, None) => image.to_string(),
    }
}

/// Counts finished images, so an interrupted run can say what it completed.
#[derive(Debug, Default)]
pub struct Tally {
    done: AtomicUsize,
    failed: AtomicUsize,
}

impl Tally {
    pub fn counts(&self) -> (usize, usize) {
        (self.done.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}

/// A display reporter that also keeps the tally.
pub struct Tallied {
    pub tally: std::sync::Arc<Tally>,
    pub display: Box<dyn Reporter>,
}

impl Reporter for Tallied {
    fn image_started(&self, image: &Reference) {
        self.display.image_started(image);
    }

    fn image_planned(&self, image: &Reference, blobs: usize, bytes: u64) {
        self.display.image_planned(image, blobs, bytes);
    }

    fn bytes_transferred(&self, image: &Reference, bytes: u64) {
        self.display.bytes_transferred(image, bytes);
    }

    fn blob_done(&self, image: &Reference, blob: &Descriptor, origin: BlobOrigin) {
        self.display.blob_done(image, blob, origin);
    }

    fn image_finished(&self, image: &Reference, result: Result<&CopyOutcome, &TransferError>) {
        let counter = if result.is_ok() { &self.tally.done } else { &self.tally.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        self.display.image_finished(image, result);
    }
}
