//! The order in which `hpn save` writes blobs into its one archive: a fixed
//! order that does not depend on which download finishes first, kept while
//! downloads and writing overlap (see the module doc of `save.rs`).
//!
//! [`ArchiveOrder`] is only the bookkeeping: what each job will write, which
//! blobs the store holds, which jobs are committed or failed, and a cursor
//! that walks job 0's places, then job 1's, and so on. [`ArchiveOrder::next_step`]
//! says what may be written next; the caller writes it and asks again, and
//! waits for [`ArchiveOrder::changed`] when the cursor stands on a place whose
//! blob is not stored yet or whose job is not committed yet.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

use hpn_oci::{Descriptor, Digest};
use tokio::sync::watch;

use crate::endpoint::CopiedImage;
use crate::error::TransferError;
use crate::mutex::lock;

/// The blobs of an image in archive order: per platform (in index order),
/// its config, then its layers in manifest order; each blob once, at its
/// first place. Its manifests are not listed: the export writes them once
/// the image is committed (platform manifests in index order, then the top).
pub(crate) fn image_blob_order(image: &CopiedImage) -> Vec<Descriptor> {
    let mut seen = HashSet::new();
    image
        .platforms
        .iter()
        .flat_map(|platform| std::iter::once(&platform.parsed.config).chain(&platform.parsed.layers))
        .filter(|blob| seen.insert(blob.digest.clone()))
        .cloned()
        .collect()
}

/// What the writer of the archive does next ([`ArchiveOrder::next_step`]).
#[derive(Debug)]
pub(crate) enum Step {
    /// Append this blob, which the store holds.
    Write { job: usize, blob: Descriptor },
    /// Every blob of this committed image is written: export it (manifests,
    /// its entry in index.json and manifest.json).
    Export(Box<CopiedImage>),
    /// The next place is not ready: wait for [`ArchiveOrder::changed`].
    Wait,
    /// Every job is written, failed or given up.
    Done,
}

/// One job's place in the order.
#[derive(Debug, Default)]
struct Place {
    /// Its blobs in order, once the engine has planned it.
    blobs: Option<VecDeque<Descriptor>>,
    /// The image, once the store has committed it; taken by its export.
    committed: Option<Box<CopiedImage>>,
    /// The job failed, or a write for it did: what is left of it is skipped.
    failed: bool,
}

#[derive(Debug)]
struct State {
    places: Vec<Place>,
    /// The job the cursor is at; `places.len()` when done.
    cursor: usize,
    /// Blobs the store holds, whoever stored them.
    stored: HashSet<Digest>,
    /// Blobs handed out to be written: each goes in once, at its first place.
    written: HashSet<Digest>,
    /// Nothing more will be planned or committed (the engine has finished
    /// every job): a place still waiting for that is given up.
    closed: bool,
    /// Failures of writes and exports, by job.
    errors: Vec<(usize, TransferError)>,
    /// The cursor has passed the last job.
    finished: bool,
    /// A step was handed out and the writer has not asked for the next one:
    /// it may still be writing, so no download may claim the next place.
    busy: bool,
    /// The blob a download is writing into the archive itself
    /// ([`ArchiveOrder::claim_stream`]), with its job: the writer waits for it.
    streaming: Option<(usize, Descriptor)>,
}

/// The fixed order of a save's archive (see the module doc).
#[derive(Debug)]
pub(crate) struct ArchiveOrder {
    state: Mutex<State>,
    changes: watch::Sender<()>,
}

impl ArchiveOrder {
    /// The order of the jobs numbered `jobs` (by [`crate::CopyJob::index`]),
    /// nothing known of any yet. A number no job has is a released place.
    pub(crate) fn new(jobs: impl IntoIterator<Item = usize>) -> Self {
        let mut places: Vec<Place> = Vec::new();
        for job in jobs {
            if places.len() <= job {
                places.resize_with(job + 1, || Place { failed: true, ..Place::default() });
            }
            places[job].failed = false;
        }
        let state = State {
            finished: places.is_empty(),
            places,
            cursor: 0,
            stored: HashSet::new(),
            written: HashSet::new(),
            closed: false,
            errors: Vec::new(),
            busy: false,
            streaming: None,
        };
        Self { state: Mutex::new(state), changes: watch::Sender::new(()) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.state());
        self.changes.send_replace(());
    }

    /// A receiver that sees every change made after it was marked seen.
    pub(crate) fn subscribe(&self) -> watch::Receiver<()> {
        self.changes.subscribe()
    }

    /// Job `job` will write `blobs`, in this order (those left to a
    /// differential base already taken out).
    pub(crate) fn planned(&self, job: usize, blobs: Vec<Descriptor>) {
        self.update(|state| {
            if let Some(place) = state.places.get_mut(job) {
                place.blobs = Some(blobs.into());
            }
        });
    }

    /// The store holds `digest`, verified.
    pub(crate) fn stored(&self, digest: &Digest) {
        self.update(|state| {
            state.stored.insert(digest.clone());
        });
    }

    /// The store has committed `image`: every blob it needs is stored.
    pub(crate) fn committed(&self, image: &CopiedImage) {
        self.update(|state| {
            state.stored.extend(image_blob_order(image).into_iter().map(|blob| blob.digest));
            if let Some(place) = state.places.get_mut(image.job_index) {
                place.committed = Some(Box::new(image.clone()));
            }
        });
    }

    /// Job `job` failed: its place is released, nothing more of it is written.
    pub(crate) fn failed(&self, job: usize) {
        self.update(|state| {
            if let Some(place) = state.places.get_mut(job) {
                place.failed = true;
            }
        });
    }

    /// Writing or exporting for `job` failed with `error`: its place is
    /// released, and the error replaces the job's result.
    pub(crate) fn write_failed(&self, job: usize, error: TransferError) {
        self.update(|state| {
            state.errors.push((job, error));
            if let Some(place) = state.places.get_mut(job) {
                place.failed = true;
            }
        });
    }

    /// Nothing more will be planned or committed: places still waiting for
    /// that are given up.
    pub(crate) fn close(&self) {
        self.update(|state| state.closed = true);
    }

    /// Whether the cursor has passed the last job.
    pub(crate) fn is_finished(&self) -> bool {
        self.state().finished
    }

    /// The failures of writes and exports, by job, taken.
    pub(crate) fn take_errors(&self) -> Vec<(usize, TransferError)> {
        std::mem::take(&mut self.state().errors)
    }

    /// Lets a download that is starting write its blob into the archive
    /// itself, in one pass with the store, when that blob is the archive's
    /// next entry: the cursor then waits until the claim is dropped.
    /// [`StreamClaim::written`] says the archive took it; a claim dropped
    /// without that gives the place back, to be written from the store.
    ///
    /// A blob whose turn is near waits for it: when every place before it is
    /// stored, the writer gets there without waiting on another download
    /// (typically, a layer's download starts while its image's small config
    /// is being written). Any other blob is refused at once, and goes into
    /// the store alone.
    pub(crate) async fn claim_stream(&self, digest: &Digest) -> Option<StreamClaim<'_>> {
        let mut changes = self.subscribe();
        loop {
            changes.borrow_and_update();
            match self.state().take_turn(digest) {
                Turn::Now => return Some(StreamClaim { order: self, written: false }),
                Turn::Soon => {}
                Turn::Never => return None,
            }
            changes.changed().await.ok()?;
        }
    }

    /// What to write next, moving the cursor past it.
    pub(crate) fn next_step(&self) -> Step {
        let (step, went_idle) = {
            let mut state = self.state();
            let was_busy = state.busy;
            let step = state.next_step();
            (step, was_busy && !state.busy)
        };
        if matches!(step, Step::Done) {
            self.update(|state| state.finished = true);
        } else if went_idle {
            // A download waiting for its turn ([`ArchiveOrder::claim_stream`]) may take it now.
            self.changes.send_replace(());
        }
        step
    }
}

/// A download's claim on the archive's next entry ([`ArchiveOrder::claim_stream`]).
#[derive(Debug)]
pub(crate) struct StreamClaim<'a> {
    order: &'a ArchiveOrder,
    written: bool,
}

impl StreamClaim<'_> {
    /// The archive has the blob: the cursor goes on past it.
    pub(crate) fn written(mut self) {
        self.written = true;
    }
}

impl Drop for StreamClaim<'_> {
    fn drop(&mut self) {
        let written = self.written;
        self.order.update(|state| {
            let Some((job, blob)) = state.streaming.take() else { return };
            if !written {
                state.written.remove(&blob.digest);
                if let Some(blobs) = state.places[job].blobs.as_mut() {
                    blobs.push_front(blob);
                }
            }
        });
    }
}

/// Whether a download may write its blob into the archive ([`State::take_turn`]).
#[derive(Debug, PartialEq, Eq)]
enum Turn {
    /// Claimed: the cursor stood on it and the writer was idle.
    Now,
    /// Every place before it is stored: the writer gets there by itself.
    Soon,
    /// It waits on something else, is not planned here, or is stored already.
    Never,
}

impl State {
    /// Claims the archive's next entry for a download of `digest` when it is
    /// that entry and the writer is idle (see [`ArchiveOrder::claim_stream`]).
    fn take_turn(&mut self, digest: &Digest) -> Turn {
        if self.streaming.is_some() || self.stored.contains(digest) || self.written.contains(digest) {
            return Turn::Never;
        }
        let busy = self.busy;
        let job = self.cursor;
        if self.settle().is_some_and(|next| next.digest == *digest) {
            if busy {
                return Turn::Soon;
            }
            let blob = self.places[job].blobs.as_mut().and_then(VecDeque::pop_front).expect("settle saw it");
            self.written.insert(blob.digest.clone());
            self.streaming = Some((job, blob));
            return Turn::Now;
        }
        for place in self.places.iter().skip(self.cursor).filter(|place| !place.failed) {
            let Some(blobs) = &place.blobs else { return Turn::Never };
            for blob in blobs {
                if blob.digest == *digest {
                    return Turn::Soon;
                }
                if !self.written.contains(&blob.digest) && !self.stored.contains(&blob.digest) {
                    return Turn::Never;
                }
            }
            // Its export waits for the image to be committed, which may take long.
            if place.committed.is_none() {
                return Turn::Never;
            }
        }
        Turn::Never
    }

    /// Moves the cursor past released places and written blobs, as
    /// [`State::next_step`] would, and returns the blob it then stands on.
    fn settle(&mut self) -> Option<&Descriptor> {
        let Self { places, cursor, written, .. } = self;
        while places.get(*cursor).is_some_and(|place| place.failed) {
            *cursor += 1;
        }
        let blobs = places.get_mut(*cursor)?.blobs.as_mut()?;
        while blobs.front().is_some_and(|blob| written.contains(&blob.digest)) {
            blobs.pop_front();
        }
        blobs.front()
    }

    fn next_step(&mut self) -> Step {
        // The writer asks again: what it was handed is written.
        self.busy = false;
        if self.streaming.is_some() {
            return Step::Wait;
        }
        let step = self.walk();
        self.busy = matches!(step, Step::Write { .. } | Step::Export(_));
        step
    }

    fn walk(&mut self) -> Step {
        while let Some(place) = self.places.get_mut(self.cursor) {
            if place.failed {
                self.cursor += 1;
                continue;
            }
            let Some(blobs) = place.blobs.as_mut() else {
                // Not planned yet: what comes after it waits, unless it never will be.
                if self.closed {
                    self.cursor += 1;
                    continue;
                }
                return Step::Wait;
            };
            if let Some(blob) = blobs.front() {
                if self.written.contains(&blob.digest) {
                    blobs.pop_front();
                    continue;
                }
                if self.stored.contains(&blob.digest) {
                    let blob = blobs.pop_front().expect("just looked at it");
                    self.written.insert(blob.digest.clone());
                    return Step::Write { job: self.cursor, blob };
                }
                if self.closed && place.committed.is_none() {
                    self.cursor += 1;
                    continue;
                }
                return Step::Wait;
            }
            if let Some(image) = place.committed.take() {
                self.cursor += 1;
                return Step::Export(image);
            }
            if self.closed {
                self.cursor += 1;
                continue;
            }
            return Step::Wait;
        }
        Step::Done
    }
}

#[cfg(test)]
mod tests {
    use std::pin::{Pin, pin};
    use std::task::{Context, Poll, Waker};

    use super::*;

    fn blob(name: &str) -> Descriptor {
        Descriptor::new("application/octet-stream", Digest::of(name.as_bytes()), name.len() as u64)
    }

    /// What the writer does, step by step, when `events` happen in this order
    /// and it runs whenever it can: the blobs it writes and the jobs it exports.
    fn written(jobs: usize, events: &[Event]) -> Vec<String> {
        let order = ArchiveOrder::new(0..jobs);
        let mut out = Vec::new();
        let drain = |order: &ArchiveOrder, out: &mut Vec<String>| {
            loop {
                match order.next_step() {
                    Step::Write { job, blob } => out.push(format!("{job}:{}", blob.size)),
                    Step::Export(image) => out.push(format!("export {}", image.job_index)),
                    Step::Wait | Step::Done => break,
                }
            }
        };
        for event in events {
            match event {
                Planned(job, blobs) => order.planned(*job, blobs.iter().map(|name| blob(name)).collect()),
                Stored(name) => order.stored(&blob(name).digest),
                Committed(job) => order.committed(&test_image(*job)),
                Failed(job) => order.failed(*job),
            }
            drain(&order, &mut out);
        }
        order.close();
        drain(&order, &mut out);
        assert!(order.is_finished(), "the cursor stopped before the end: {out:?}");
        out
    }

    fn test_image(job: usize) -> CopiedImage {
        CopiedImage {
            job_index: job,
            destination: "127.0.0.1:5000/a:1".parse().unwrap(),
            top: hpn_oci::RawManifest {
                bytes: bytes::Bytes::new(),
                media_type: String::new(),
                digest: Digest::of(b""),
            },
            platforms: Vec::new(),
            primary: 0,
        }
    }

    enum Event {
        Planned(usize, &'static [&'static str]),
        Stored(&'static str),
        Committed(usize),
        Failed(usize),
    }
    use Event::{Committed, Failed, Planned, Stored};

    #[test]
    fn the_order_is_the_plan_order_whatever_order_blobs_arrive_in() {
        // Sizes name the blobs: "a" is 1 byte, "bb" 2, "ccc" 3.
        let in_order = [
            Planned(0, &["a", "bb"]),
            Planned(1, &["bb", "ccc"]),
            Stored("a"),
            Stored("bb"),
            Committed(0),
            Stored("ccc"),
            Committed(1),
        ];
        let expected = ["0:1", "0:2", "export 0", "1:3", "export 1"];
        assert_eq!(written(2, &in_order), expected);
        let backwards = [
            Stored("ccc"),
            Planned(1, &["bb", "ccc"]),
            Stored("bb"),
            Committed(1),
            Planned(0, &["a", "bb"]),
            Stored("a"),
            Committed(0),
        ];
        assert_eq!(written(2, &backwards), expected);
    }

    #[test]
    fn a_failed_job_releases_its_place_and_a_shared_blob_moves_to_the_next() {
        let events = [
            Planned(0, &["a", "bb"]),
            Planned(1, &["bb", "ccc"]),
            Stored("bb"),
            Stored("ccc"),
            Committed(1),
            // Job 0 waited for "a", which never comes.
            Failed(0),
        ];
        assert_eq!(written(2, &events), ["1:2", "1:3", "export 1"]);
        // Failing before its plan: nothing of it, nothing held back.
        let events = [Planned(1, &["a"]), Stored("a"), Committed(1), Failed(0)];
        assert_eq!(written(2, &events), ["1:1", "export 1"]);
    }

    #[test]
    fn closing_gives_up_places_that_will_never_be_filled() {
        // Job 0 neither planned nor failed (a bug elsewhere): closing still lets job 1 out.
        let events = [Planned(1, &["a"]), Stored("a"), Committed(1)];
        assert_eq!(written(2, &events), ["1:1", "export 1"]);
        assert!(ArchiveOrder::new(std::iter::empty()).is_finished());
    }

    /// The blob a step writes, or what else the step is.
    fn step(order: &ArchiveOrder) -> String {
        match order.next_step() {
            Step::Write { job, blob } => format!("{job}:{}", blob.size),
            Step::Export(image) => format!("export {}", image.job_index),
            Step::Wait => "wait".to_owned(),
            Step::Done => "done".to_owned(),
        }
    }

    /// Polls a claim once, as an executor would, without waiting.
    fn poll_claim<'a>(
        claim: &mut Pin<&mut impl Future<Output = Option<StreamClaim<'a>>>>,
    ) -> Poll<Option<StreamClaim<'a>>> {
        claim.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    }

    fn claim_now<'a>(order: &'a ArchiveOrder, name: &str) -> Option<StreamClaim<'a>> {
        let digest = blob(name).digest;
        let mut claim = pin!(order.claim_stream(&digest));
        match poll_claim(&mut claim) {
            Poll::Ready(claim) => claim,
            Poll::Pending => panic!("the claim of {name} waits"),
        }
    }

    #[test]
    fn a_download_claims_the_next_entry_and_waits_for_its_turn_only_when_it_is_near() {
        let order = ArchiveOrder::new(0..2);
        order.planned(0, vec![blob("a"), blob("bb"), blob("ccc")]);
        order.planned(1, vec![blob("dddd")]);
        assert!(claim_now(&order, "bb").is_none(), "bb would wait on a's download");
        assert!(claim_now(&order, "dddd").is_none(), "dddd would wait on job 0's commit");
        let claim = claim_now(&order, "a").expect("a is next and the writer idle");
        assert!(claim_now(&order, "a").is_none(), "claimed twice");
        order.stored(&blob("bb").digest);
        // The writer waits for the download, even with bb ready behind it.
        assert_eq!(step(&order), "wait");
        claim.written();
        assert_eq!(step(&order), "0:2");
        // The writer may still be writing bb: ccc is next, and its claim waits until the writer asks again.
        let ccc = blob("ccc").digest;
        let mut waiting = pin!(order.claim_stream(&ccc));
        assert!(poll_claim(&mut waiting).is_pending(), "claimed while the writer was busy");
        assert_eq!(step(&order), "wait");
        let Poll::Ready(Some(claim)) = poll_claim(&mut waiting) else { panic!("ccc's turn came and went") };
        // Not taken by the archive: the place is given back, and the store's copy written there.
        drop(claim);
        order.stored(&ccc);
        assert_eq!(step(&order), "0:3");
        // Job 0 committed and every blob of it written: dddd's turn is near.
        order.committed(&test_image(0));
        let dddd = blob("dddd").digest;
        let mut waiting = pin!(order.claim_stream(&dddd));
        assert!(poll_claim(&mut waiting).is_pending(), "dddd's turn comes after job 0's export");
        assert_eq!(step(&order), "export 0");
        assert!(poll_claim(&mut waiting).is_pending(), "claimed while the export was running");
        assert_eq!(step(&order), "wait");
        let Poll::Ready(Some(claim)) = poll_claim(&mut waiting) else { panic!("dddd's turn came and went") };
        claim.written();
        order.committed(&test_image(1));
        assert_eq!(step(&order), "export 1");
        assert_eq!(step(&order), "done");
    }
}
