use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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

/// How often plain progress lines are written off a terminal: often enough
/// that a CI log shows a long pull is alive, rarely enough to stay readable.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Picks how progress is shown: bars on a terminal, plain lines when stderr
/// is a pipe or a file (CI logs), nothing with --quiet or --json.
pub fn reporter(quiet: bool, json: bool) -> Box<dyn Reporter> {
    if quiet || json {
        Box::new(hpn_transfer::NoReport)
    } else if std::io::stderr().is_terminal() {
        Box::new(BarReporter::new(colour_on_stderr()))
    } else {
        Box::new(PlainReporter::start(PLAIN_PROGRESS_EVERY))
    }
}

/// The run as a whole: images queued and finished, bytes moved.
#[derive(Debug, Default)]
struct RunTotals {
    queued: AtomicUsize,
    started: AtomicUsize,
    finished: AtomicUsize,
    bytes: AtomicU64,
}

impl RunTotals {
    /// `images 2/5 done`: a single copy queues nothing, so what started counts too.
    fn images(&self) -> String {
        let total = self.queued.load(Ordering::Relaxed).max(self.started.load(Ordering::Relaxed));
        format!("images {}/{total} done", self.finished.load(Ordering::Relaxed))
    }

    fn in_progress(&self) -> bool {
        self.finished.load(Ordering::Relaxed) < self.started.load(Ordering::Relaxed)
    }
}

/// `layer sha256:0123abcd (fetched for app:1)`.
fn waiting_message(blob: &Descriptor, fetched_for: &Reference) -> String {
    format!("waiting for layer {} (fetched for {})", blob.digest.short(), short_name(fetched_for))
}

/// One overall line (images done/total, bytes, rate) above one bar per image
/// in progress (bytes, rate and ETA, or what it waits for).
struct BarReporter {
    multi: MultiProgress,
    overall: ProgressBar,
    totals: RunTotals,
    style: ProgressStyle,
    waiting_style: ProgressStyle,
    /// Each image's bar, and whether it shows a wait.
    bars: Mutex<HashMap<Reference, (ProgressBar, bool)>>,
}

impl BarReporter {
    fn new(colour: bool) -> Self {
        let spinner = if colour { "{spinner:.green}" } else { "{spinner}" };
        let template = |rest: &str| {
            ProgressStyle::with_template(&format!("{spinner} {{prefix:<40!}} {rest}"))
                .expect("the template is valid")
                .progress_chars("=> ")
        };
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let overall = multi
            .add(ProgressBar::new(0).with_style(template("{bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12}")));
        overall.set_prefix("images 0/0 done");
        overall.enable_steady_tick(Duration::from_millis(200));
        Self {
            multi,
            overall,
            totals: RunTotals::default(),
            style: template("{bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta:>3} {msg}"),
            waiting_style: template("{msg}"),
            bars: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `work` on the image's bar, first putting it back from a wait.
    fn with_bar(&self, image: &Reference, work: impl FnOnce(&ProgressBar)) {
        let mut bars = self.bars.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((bar, waiting)) = bars.get_mut(image) {
            if std::mem::take(waiting) {
                bar.set_style(self.style.clone());
                bar.set_message("");
            }
            work(bar);
        }
    }
}

impl Reporter for BarReporter {
    fn images_queued(&self, count: usize) {
        self.totals.queued.fetch_add(count, Ordering::Relaxed);
        self.overall.set_prefix(self.totals.images());
    }

    fn image_started(&self, image: &Reference) {
        self.totals.started.fetch_add(1, Ordering::Relaxed);
        self.overall.set_prefix(self.totals.images());
        let bar = self.multi.add(ProgressBar::new(0).with_style(self.style.clone()).with_prefix(short_name(image)));
        bar.set_message("resolving");
        bar.enable_steady_tick(Duration::from_millis(200));
        self.bars.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(image.clone(), (bar, false));
    }

    fn image_planned(&self, image: &Reference, blobs: usize, bytes: u64) {
        self.overall.inc_length(bytes);
        self.with_bar(image, |bar| {
            bar.set_length(bytes);
            bar.set_message(format!("{blobs} layers"));
        });
    }

    fn bytes_transferred(&self, image: &Reference, bytes: u64) {
        self.overall.inc(bytes);
        self.with_bar(image, |bar| bar.inc(bytes));
    }

    fn blob_waiting(&self, image: &Reference, blob: &Descriptor, fetched_for: &Reference) {
        let mut bars = self.bars.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((bar, waiting)) = bars.get_mut(image) {
            *waiting = true;
            bar.set_style(self.waiting_style.clone());
            bar.set_message(waiting_message(blob, fetched_for));
        }
    }

    fn blob_done(&self, image: &Reference, blob: &Descriptor, origin: BlobOrigin) {
        if origin == BlobOrigin::AlreadyPresent {
            self.overall.inc(blob.size);
        }
        self.with_bar(image, |bar| {
            if origin == BlobOrigin::AlreadyPresent {
                bar.inc(blob.size);
            }
        });
    }

    fn image_finished(&self, image: &Reference, result: Result<&CopyOutcome, &TransferError>) {
        self.totals.finished.fetch_add(1, Ordering::Relaxed);
        self.overall.set_prefix(self.totals.images());
        let bar = self.bars.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(image);
        if let Some((bar, _)) = bar {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        let _ = self.multi.println(outcome_line(image, result));
    }
}

impl Drop for BarReporter {
    fn drop(&mut self) {
        self.overall.finish_and_clear();
    }
}

/// Plain lines for logs: one when an image is done or starts waiting on
/// another's layer, and every `every` a line for the whole run while
/// something is in progress, so a long pull is never silent for minutes.
struct PlainReporter {
    totals: Arc<RunTotals>,
    /// Dropped with the reporter, which ends the ticker.
    _stop: std::sync::mpsc::Sender<()>,
}

impl PlainReporter {
    fn start(every: Duration) -> Self {
        let totals = Arc::new(RunTotals::default());
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let ticking = Arc::clone(&totals);
        let started = std::thread::Builder::new().name("hpn-progress".into()).spawn(move || {
            let mut last_bytes = 0;
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let bytes = ticking.bytes.load(Ordering::Relaxed);
                if ticking.in_progress() {
                    let rate = (bytes - last_bytes) as f64 / every.as_secs_f64();
                    eprintln!(
                        "progress {}, {} fetched, {}/s",
                        ticking.images(),
                        HumanBytes(bytes),
                        HumanBytes(rate as u64)
                    );
                }
                last_bytes = bytes;
            }
        });
        if let Err(error) = started {
            tracing::debug!(%error, "cannot start the progress thread; only per-image lines will be printed");
        }
        Self { totals, _stop: stop }
    }
}

impl Reporter for PlainReporter {
    fn images_queued(&self, count: usize) {
        self.totals.queued.fetch_add(count, Ordering::Relaxed);
    }

    fn image_started(&self, _image: &Reference) {
        self.totals.started.fetch_add(1, Ordering::Relaxed);
    }

    fn bytes_transferred(&self, _image: &Reference, bytes: u64) {
        self.totals.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn blob_waiting(&self, image: &Reference, blob: &Descriptor, fetched_for: &Reference) {
        eprintln!("waiting {} {}", short_name(image), waiting_message(blob, fetched_for));
    }

    fn image_finished(&self, image: &Reference, result: Result<&CopyOutcome, &TransferError>) {
        self.totals.finished.fetch_add(1, Ordering::Relaxed);
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
    pub tally: Arc<Tally>,
    pub display: Box<dyn Reporter>,
}

impl Reporter for Tallied {
    fn images_queued(&self, count: usize) {
        self.display.images_queued(count);
    }

    fn image_started(&self, image: &Reference) {
        self.display.image_started(image);
    }

    fn blob_waiting(&self, image: &Reference, blob: &Descriptor, fetched_for: &Reference) {
        self.display.blob_waiting(image, blob, fetched_for);
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
