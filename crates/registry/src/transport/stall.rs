//! Stall detection: no total timeouts (a large blob may take hours), but a
//! request whose answer, body or upload stops moving for the stall timeout
//! is treated as broken.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::{RequestBuilder, Response, Url};
use tracing::debug;

use crate::error::{TransportError, TransportProblem};

/// Sends one request. Without `progress`, the response must start within
/// `stall`; with it (a request carrying an upload body), the body must keep
/// moving instead. Every request is logged with host and path only: a
/// redirect's or upload session's query may carry a signature or the
/// registry's upload state.
pub(crate) async fn send(
    request: RequestBuilder,
    stall: Duration,
    progress: Option<&Progress>,
) -> Result<Response, TransportError> {
    let (client, request) = request.build_split();
    let request = request?;
    let (method, host, path) = (request.method().clone(), host_of(request.url()), request.url().path().to_owned());
    let started = Instant::now();
    let send = client.execute(request);
    let result = match progress {
        None => match tokio::time::timeout(stall, send).await {
            Ok(result) => result.map_err(TransportError::from),
            Err(_) => Err(TransportProblem::NoResponse(stall).into()),
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

/// The next chunk of a response body; an error when none comes within `stall`.
pub(crate) async fn chunk(response: &mut Response, stall: Duration) -> Result<Option<bytes::Bytes>, TransportError> {
    match tokio::time::timeout(stall, response.chunk()).await {
        Err(_) => Err(TransportProblem::Stalled(stall).into()),
        Ok(result) => result.map_err(TransportError::from),
    }
}

/// Reads a body up to `limit` bytes; `true` when there was more.
pub(crate) async fn read_body(
    response: &mut Response,
    limit: usize,
    stall: Duration,
) -> Result<(Vec<u8>, bool), TransportError> {
    let mut body = Vec::new();
    while let Some(chunk) = chunk(response, stall).await? {
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
