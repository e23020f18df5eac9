//! Slow and stalled peers: no total timeout for a blob (a large one may take
//! hours), but a response head that does not come, a blob body that stays
//! below the minimum rate (curl's `--speed-limit`/`--speed-time`), a small
//! body that does not arrive whole in time, or an upload that stops moving,
//! is treated as broken and goes back to the retry helper.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::{RequestBuilder, Response, Url};
use tracing::debug;

use crate::error::{TransportError, TransportProblem};
use crate::options::{ClientOptions, SMALL_BODY};

/// Sends one request. Without `progress`, the response head must come within
/// the response timeout; with it (a request carrying an upload body), the
/// body must keep moving instead (the stall timeout). Every request is
/// logged with host and path only: a redirect's or upload session's query
/// may carry a signature or the registry's upload state.
pub(crate) async fn send(
    request: RequestBuilder,
    options: &ClientOptions,
    progress: Option<&Progress>,
) -> Result<Response, TransportError> {
    let (head_timeout, stall) = (options.response_timeout, options.stall_timeout);
    let (client, request) = request.build_split();
    let request = request?;
    let (method, host, path) = (request.method().clone(), host_of(request.url()), request.url().path().to_owned());
    let started = Instant::now();
    let send = client.execute(request);
    let result = match progress {
        None => match tokio::time::timeout(head_timeout, send).await {
            Ok(result) => result.map_err(TransportError::from),
            Err(_) => Err(TransportProblem::NoResponse(head_timeout).into()),
        },
        Some(progress) => await_upload(send, progress, stall).await,
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match &result {
        Ok(response) => {
            debug!(%method, %host, %path, status = response.status().as_u16(), elapsed_ms, "registry request")
        }
        Err(error) => debug!(%method, %host, %path, elapsed_ms, "registry request failed: {error}"),
    }
    result
}

/// `host[:port]` of a URL, for logs and messages.
pub(crate) fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => String::new(),
    }
}

/// When an upload body last moved. The HTTP stack pulls the body only as
/// fast as the registry reads it, so a long pause means the registry stopped
/// reading, unless the body's own source is what is slow (it has its own
/// stall detection).
#[derive(Debug)]
pub(crate) struct Progress {
    base: Instant,
    /// Milliseconds after `base` of the last pull by the HTTP stack.
    last_ms: AtomicU64,
    waiting_on_source: AtomicBool,
    body_done: AtomicBool,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            waiting_on_source: AtomicBool::new(false),
            body_done: AtomicBool::new(false),
        }
    }

    pub(crate) fn touch(&self) {
        self.last_ms.store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub(crate) fn set_waiting_on_source(&self, waiting: bool) {
        self.waiting_on_source.store(waiting, Ordering::Relaxed);
    }

    pub(crate) fn set_body_done(&self) {
        self.touch();
        self.body_done.store(true, Ordering::Relaxed);
    }

    /// How much longer the registry has before the upload counts as stalled;
    /// zero when it is stalled now.
    fn time_left(&self, stall: Duration) -> Duration {
        if self.waiting_on_source.load(Ordering::Relaxed) {
            return stall;
        }
        // After the last byte the registry verifies the blob and moves it
        // into place before it answers; on object-storage backends that is a
        // server-side copy, which for a large blob takes a while.
        let limit = if self.body_done.load(Ordering::Relaxed) { stall.saturating_mul(5) } else { stall };
        let idle = self.base.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)));
        limit.saturating_sub(idle)
    }
}

/// Waits for the answer to a request with a streamed body. The request fails
/// when the body stops moving for the stall timeout (see [`Progress`]).
async fn await_upload(
    send: impl Future<Output = Result<Response, reqwest::Error>>,
    progress: &Progress,
    stall: Duration,
) -> Result<Response, TransportError> {
    // The clock starts now, not when the body was opened: waiting for a
    // request slot or a token is not the registry stalling.
    progress.touch();
    let mut send = std::pin::pin!(send);
    loop {
        let left = progress.time_left(stall);
        if left.is_zero() {
            return Err(TransportProblem::UploadStalled(stall).into());
        }
        if let Ok(result) = tokio::time::timeout(left, send.as_mut()).await {
            return result.map_err(TransportError::from);
        }
    }
}

/// What a response body must keep up with: in every window of the stall
/// timeout some bytes and at least the minimum rate (for blobs), and all of
/// it before the body timeout (for small bodies). Checked as chunks come and
/// whenever a window or the deadline ends without one.
///
/// A window counts only the time spent waiting for the network: a consumer
/// that stops reading (a slow disk, a lock) holds the body back by its own
/// choice, and the registry is not to blame for that.
pub(crate) struct Pace {
    /// The window, and the bytes each window must bring.
    rate: Option<(Duration, u64)>,
    /// Time spent waiting for the body in the current window.
    waited: Duration,
    in_window: u64,
    received: u64,
    /// When a small body must be complete, and the timeout it came from.
    deadline: Option<(Instant, Duration)>,
    min_rate: u64,
}

impl Pace {
    /// For a blob body of `size` bytes: the minimum rate, and the deadline
    /// too when the blob is small (a config).
    pub(crate) fn blob(options: &ClientOptions, size: u64) -> Self {
        let mut pace = Self::new(options, size <= SMALL_BODY);
        pace.rate = Some((options.stall_timeout, Self::window_bytes(options)));
        pace
    }

    /// The bytes a blob body must bring in each window: the minimum rate
    /// over the stall timeout, at least one.
    pub(crate) fn window_bytes(options: &ClientOptions) -> u64 {
        (options.min_transfer_rate as f64 * options.stall_timeout.as_secs_f64()).ceil().max(1.0) as u64
    }

    /// For a small body of no known size (a manifest, a token or error
    /// answer): the deadline alone.
    pub(crate) fn small(options: &ClientOptions) -> Self {
        Self::new(options, true)
    }

    fn new(options: &ClientOptions, small: bool) -> Self {
        let now = Instant::now();
        Self {
            rate: None,
            waited: Duration::ZERO,
            in_window: 0,
            received: 0,
            deadline: small
                .then(|| now.checked_add(options.body_timeout).map(|at| (at, options.body_timeout)))
                .flatten(),
            min_rate: options.min_transfer_rate,
        }
    }

    /// The next chunk of `response`'s body, `None` at its end; an error when
    /// the body falls behind.
    pub(crate) async fn chunk(&mut self, response: &mut Response) -> Result<Option<bytes::Bytes>, TransportError> {
        loop {
            let now = Instant::now();
            if let Some((at, limit)) = self.deadline
                && now >= at
            {
                return Err(TransportProblem::Deadline { limit, received: self.received }.into());
            }
            if let Some((window, per_window)) = self.rate
                && self.waited >= window
            {
                if self.in_window < per_window {
                    let problem =
                        TransportProblem::TooSlow { received: self.in_window, window, min_rate: self.min_rate };
                    return Err(problem.into());
                }
                self.waited = Duration::ZERO;
                self.in_window = 0;
                continue;
            }
            // A window or deadline that cannot end (an absurd timeout) is no rule.
            let window_end = self.rate.and_then(|(window, _)| now.checked_add(window - self.waited));
            let wake = match (window_end, self.deadline) {
                (Some(end), Some((at, _))) => Some(end.min(at)),
                (end, deadline) => end.or(deadline.map(|(at, _)| at)),
            };
            // Dropping `chunk()` at a wake-up loses nothing: the body keeps
            // what was not yet handed out.
            let next = match wake {
                Some(wake) => tokio::time::timeout_at(wake.into(), response.chunk()).await,
                None => Ok(response.chunk().await),
            };
            self.waited += now.elapsed();
            let Ok(next) = next else { continue };
            return match next? {
                Some(chunk) => {
                    self.in_window += chunk.len() as u64;
                    self.received += chunk.len() as u64;
                    Ok(Some(chunk))
                }
                None => Ok(None),
            };
        }
    }
}

/// Reads a small body up to `limit` bytes within the body timeout; `true`
/// when there was more.
pub(crate) async fn read_body(
    response: &mut Response,
    limit: usize,
    options: &ClientOptions,
) -> Result<(Vec<u8>, bool), TransportError> {
    let mut pace = Pace::small(options);
    let mut body = Vec::new();
    while let Some(chunk) = pace.chunk(response).await? {
        if body.len() + chunk.len() > limit {
            let room = limit - body.len();
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unlimited_stall_timeout_is_no_overflow() {
        let progress = Progress::new();
        progress.set_body_done();
        assert!(progress.time_left(Duration::MAX) > Duration::from_secs(365 * 24 * 60 * 60));
    }
}
