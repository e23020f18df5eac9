//! Blob bodies that check their size and resume where they broke.

use bytes::Bytes;
use hpn_oci::BlobStream;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, HeaderValue, RANGE};
use reqwest::{Response, StatusCode};
use tokio::sync::OwnedSemaphorePermit;
use tracing::debug;

use crate::client::{Call, RegistryClient, Reply, header_u64};
use crate::error::{RegistryError, SizeProblem};
use crate::retry::TransportError;

pub(crate) fn stream(client: RegistryClient, call: Call, reply: Reply, size: u64) -> BlobStream {
    let body = BlobBody {
        client,
        call,
        response: Some(reply.response),
        permit: Some(reply.permit),
        size,
        delivered: 0,
        skip: 0,
        failures: 0,
        progress_mark: 0,
        finished: false,
    };
    Box::pin(futures_util::stream::unfold(body, |mut body| async move {
        // The error travels as an `io::Error`, the stream's item error, and
        // stays a `RegistryError` for whoever downcasts it.
        let item = body.next().await?.map_err(std::io::Error::other);
        Some((item, body))
    }))
}

struct BlobBody {
    client: RegistryClient,
    call: Call,
    response: Option<Response>,
    /// The host's request slot, held while the body is open.
    permit: Option<OwnedSemaphorePermit>,
    size: u64,
    /// Bytes handed to the consumer.
    delivered: u64,
    /// Bytes of the current response to drop: a resumed response that starts
    /// before what was delivered (a 200 to a `Range` request starts at 0).
    skip: u64,
    /// Consecutive breaks without progress; progress resets it, so a long
    /// download over a flaky link is not capped by the retry count.
    failures: u32,
    progress_mark: u64,
    finished: bool,
}

impl BlobBody {
    async fn next(&mut self) -> Option<Result<Bytes, RegistryError>> {
        if self.finished {
            return None;
        }
        let stall = self.client.inner.options.stall_timeout;
        loop {
            if self.response.is_none()
                && let Err(error) = self.reopen().await
            {
                return Some(Err(self.fail(error)));
            }
            let response = self.response.as_mut().expect("opened above");
            let broken = match tokio::time::timeout(stall, response.chunk()).await {
                Ok(Ok(Some(chunk))) => match self.accept(chunk) {
                    Ok(Some(chunk)) => return Some(Ok(chunk)),
                    Ok(None) => continue,
                    Err(error) => return Some(Err(self.fail(error))),
                },
                Ok(Ok(None)) | Ok(Err(_)) if self.delivered == self.size => {
                    // Everything arrived; a connection that breaks after the
                    // last byte does not matter.
                    self.finish();
                    return None;
                }
                Ok(Ok(None)) => TransportError::EndedEarly { received: self.delivered, expected: self.size },
                Ok(Err(error)) => TransportError::Http(error),
                Err(_) => TransportError::Stalled(stall),
            };
            self.response = None;
            self.permit = None;
            if self.delivered > self.progress_mark {
                self.progress_mark = self.delivered;
                self.failures = 0;
            }
            self.failures += 1;
            let policy = &self.client.inner.options.retry;
            if self.failures >= policy.attempts() {
                let error = self.give_up(broken);
                return Some(Err(self.fail(error)));
            }
            debug!(
                registry = %self.call.registry.name,
                subject = %self.call.subject,
                delivered = self.delivered,
                size = self.size,
                failures = self.failures,
                "blob body broke ({}); resuming",
                broken.describe()
            );
            tokio::time::sleep(policy.backoff(self.failures)).await;
        }
    }

    /// Counts a chunk; `Ok(None)` when all of it was to be skipped.
    fn accept(&mut self, mut chunk: Bytes) -> Result<Option<Bytes>, RegistryError> {
        if self.skip > 0 {
            let dropped = self.skip.min(chunk.len() as u64);
            chunk = chunk.slice(dropped as usize..);
            self.skip -= dropped;
        }
        if chunk.is_empty() {
            return Ok(None);
        }
        if self.delivered + chunk.len() as u64 > self.size {
            return Err(self.size_mismatch(SizeProblem::Exceeded));
        }
        self.delivered += chunk.len() as u64;
        Ok(Some(chunk))
    }

    /// Asks again from the first byte not delivered. The request goes to the
    /// registry, not to a redirect target, whose signed URL may have expired.
    async fn reopen(&mut self) -> Result<(), RegistryError> {
        let mut call = self.call.clone();
        let range = HeaderValue::from_str(&format!("bytes={}-", self.delivered)).expect("digits");
        call.headers.insert(RANGE, range);
        let reply = self.client.execute(&call).await?;
        let status = reply.response.status();
        match status {
            StatusCode::PARTIAL_CONTENT => {
                let header = reply.response.headers().get(CONTENT_RANGE).and_then(|value| value.to_str().ok());
                let Some((start, total)) = header.and_then(parse_content_range) else {
                    return Err(self.protocol(format!("206 with an unusable Content-Range {header:?}")));
                };
                if start > self.delivered {
                    return Err(self.protocol(format!("asked for bytes from {}, got from {start}", self.delivered)));
                }
                if let Some(total) = total
                    && total != self.size
                {
                    return Err(self.size_mismatch(SizeProblem::Announced(total)));
                }
                self.skip = self.delivered - start;
            }
            // The registry ignored the range: read from 0 and drop what we have.
            StatusCode::OK => {
                if let Some(length) = header_u64(reply.response.headers(), &CONTENT_LENGTH)
                    && length != self.size
                {
                    return Err(self.size_mismatch(SizeProblem::Announced(length)));
                }
                self.skip = self.delivered;
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                return Err(self.size_mismatch(SizeProblem::EndedAt(self.delivered)));
            }
            status if !status.is_success() => return Err(self.client.failure(&call, reply).await),
            status => return Err(self.protocol(format!("unexpected HTTP {status} to a Range request"))),
        }
        debug!(registry = %self.call.registry.name, subject = %self.call.subject, from = self.delivered, status = status.as_u16(), "resumed blob");
        self.response = Some(reply.response);
        self.permit = Some(reply.permit);
        Ok(())
    }

    fn give_up(&self, broken: TransportError) -> RegistryError {
        match broken {
            TransportError::EndedEarly { received, .. } => self.size_mismatch(SizeProblem::EndedAt(received)),
            other => {
                let plain = self.client.is_plain(&self.call);
                RegistryError::network(&self.call.registry.name, &self.call.subject, self.failures, other, plain)
            }
        }
    }

    fn fail(&mut self, error: RegistryError) -> RegistryError {
        self.finish();
        error
    }

    fn finish(&mut self) {
        self.finished = true;
        self.response = None;
        self.permit = None;
    }

    fn size_mismatch(&self, actual: SizeProblem) -> RegistryError {
        RegistryError::SizeMismatch {
            registry: self.call.registry.name.clone(),
            subject: self.call.subject.clone(),
            expected: self.size,
            actual,
        }
    }

    fn protocol(&self, message: String) -> RegistryError {
        RegistryError::protocol(&self.call.registry.name, &self.call.subject, message)
    }
}

/// `bytes START-END/TOTAL` or `bytes START-END/*`.
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = range.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        total => Some(total.parse::<u64>().ok().filter(|total| *total > end)?),
    };
    Some((start, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_forms() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, None)));
        assert_eq!(parse_content_range("bytes 5-4/10"), None);
        assert_eq!(parse_content_range("bytes 5-10/10"), None);
        assert_eq!(parse_content_range("bytes */10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
