//! Blob bodies that check their size and resume where they broke.

use bytes::Bytes;
use hpn_oci::{BlobStream, Descriptor, Digest, Reference};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, HeaderValue, RANGE};
use reqwest::{Method, Response, StatusCode};
use tokio::sync::OwnedSemaphorePermit;
use tracing::debug;

use crate::error::{RegistryError, SizeProblem, Target, TransportError, TransportProblem};
use crate::headers::header_u64;
use crate::transport::retry::Retrier;
use crate::transport::stall::Pace;
use crate::transport::{Call, Reply, Scope, Transport};

/// `GET` of a blob: a stream that checks the size and resumes with `Range`.
pub(crate) async fn get(
    transport: &Transport,
    reference: &Reference,
    descriptor: &Descriptor,
) -> Result<BlobStream, RegistryError> {
    let call = call(transport, reference, &descriptor.digest, Method::GET)?;
    let reply = transport.execute(&call).await?;
    let status = reply.response.status();
    if !status.is_success() {
        return Err(transport.failure(&call, reply).await);
    }
    if status != StatusCode::OK {
        return Err(RegistryError::protocol(call.host.name(), &call.subject, format!("unexpected HTTP {status}")));
    }
    if let Some(length) = header_u64(reply.response.headers(), &CONTENT_LENGTH)
        && length != descriptor.size
    {
        return Err(RegistryError::SizeMismatch {
            registry: call.host.name().to_owned(),
            subject: call.subject.clone(),
            expected: descriptor.size,
            actual: SizeProblem::Announced(length),
        });
    }
    Ok(stream(transport.clone(), call, reply, descriptor.size))
}

/// `HEAD` of a blob: its size, or `None` on 404.
pub(crate) async fn head(
    transport: &Transport,
    reference: &Reference,
    digest: &Digest,
) -> Result<Option<u64>, RegistryError> {
    let call = call(transport, reference, digest, Method::HEAD)?;
    let Some(reply) = transport.execute_lookup(&call).await? else { return Ok(None) };
    header_u64(reply.response.headers(), &CONTENT_LENGTH)
        .map(Some)
        .ok_or_else(|| RegistryError::protocol(call.host.name(), &call.subject, "HEAD answer without Content-Length"))
}

fn call(transport: &Transport, reference: &Reference, digest: &Digest, method: Method) -> Result<Call, RegistryError> {
    let repository = reference.repository();
    Ok(Call::new(
        transport.host(reference.registry())?,
        repository,
        method,
        format!("/v2/{repository}/blobs/{digest}"),
        vec![Scope::pull(repository)],
        format!("blob {digest} of {}", reference.name()),
        Target::Blob,
    ))
}

fn stream(transport: Transport, call: Call, reply: Reply, size: u64) -> BlobStream {
    let retrier = Retrier::new(&transport.options().retry);
    let pace = Pace::blob(transport.options(), size);
    let body = BlobBody {
        retrier,
        delivered_at_break: 0,
        progress_bytes: Pace::window_bytes(transport.options()),
        body: Body {
            transport,
            call,
            pace,
            response: Some(reply.response),
            permit: Some(reply.permit),
            size,
            delivered: 0,
            skip: 0,
            finished: false,
        },
    };
    Box::pin(futures_util::stream::unfold(body, |mut body| async move {
        // The error travels as an `io::Error`, the stream's item error, and
        // stays a `RegistryError` for whoever downcasts it.
        let item = body.next().await?.map_err(std::io::Error::other);
        Some((item, body))
    }))
}

struct BlobBody {
    /// Counts consecutive breaks without progress: a break after at least a
    /// window's worth of data at the minimum rate (or any data, without a
    /// minimum) starts the count over, so a long download over a flaky link
    /// is not capped by the policy's attempts, while a registry trickling a
    /// few bytes per attempt is.
    retrier: Retrier,
    /// What [`Body::delivered`] was at the last break.
    delivered_at_break: u64,
    /// Bytes between two breaks that count as progress.
    progress_bytes: u64,
    body: Body,
}

impl BlobBody {
    async fn next(&mut self) -> Option<Result<Bytes, RegistryError>> {
        if self.body.finished {
            return None;
        }
        let result = loop {
            let broken = match self.body.read().await {
                Ok(read) => break Ok(read),
                Err(Break::Fatal(error)) => break Err(error),
                Err(Break::Transport(broken)) => broken,
            };
            if self.body.delivered - self.delivered_at_break >= self.progress_bytes {
                self.retrier.progressed();
            }
            self.delivered_at_break = self.body.delivered;
            let error = self.body.give_up(broken, self.retrier.attempt());
            if let Err(error) = self.retrier.failed(error, None).await {
                break Err(error);
            }
        };
        match result {
            Ok(Some(chunk)) => Some(Ok(chunk)),
            Ok(None) => {
                self.body.finish();
                None
            }
            Err(error) => {
                self.body.finish();
                Some(Err(error))
            }
        }
    }
}

/// Why a read gave no chunk.
enum Break {
    /// The body broke or stalled: resume it.
    Transport(TransportError),
    Fatal(RegistryError),
}

struct Body {
    transport: Transport,
    call: Call,
    response: Option<Response>,
    /// The pace the current response must keep.
    pace: Pace,
    /// The host's request slot, held while the body is open.
    permit: Option<OwnedSemaphorePermit>,
    size: u64,
    /// Bytes handed to the consumer.
    delivered: u64,
    /// Bytes of the current response to drop: a resumed response that starts
    /// before what was delivered (a 200 to a `Range` request starts at 0).
    skip: u64,
    finished: bool,
}

impl Body {
    /// The next chunk (`None` at the end), re-opening the body first when it broke.
    async fn read(&mut self) -> Result<Option<Bytes>, Break> {
        loop {
            if self.response.is_none() {
                self.reopen().await.map_err(Break::Fatal)?;
            }
            let response = self.response.as_mut().expect("opened above");
            let broken = match self.pace.chunk(response).await {
                Ok(Some(chunk)) => match self.accept(chunk).map_err(Break::Fatal)? {
                    Some(chunk) => return Ok(Some(chunk)),
                    None => continue,
                },
                // Everything arrived; a connection that breaks after the
                // last byte does not matter.
                Ok(None) | Err(_) if self.delivered == self.size => return Ok(None),
                Ok(None) => TransportProblem::EndedEarly { received: self.delivered, expected: self.size }.into(),
                Err(error) => error,
            };
            self.response = None;
            self.permit = None;
            debug!(
                registry = %self.call.host.name(),
                subject = %self.call.subject,
                delivered = self.delivered,
                size = self.size,
                "blob body broke ({broken}); resuming"
            );
            return Err(Break::Transport(broken));
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
        let reply = self.transport.execute(&call).await?;
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
            status if !status.is_success() => return Err(self.transport.failure(&call, reply).await),
            status => return Err(self.protocol(format!("unexpected HTTP {status} to a Range request"))),
        }
        debug!(registry = %self.call.host.name(), subject = %self.call.subject, from = self.delivered, status = status.as_u16(), "resumed blob");
        self.response = Some(reply.response);
        self.permit = Some(reply.permit);
        self.pace = Pace::blob(self.transport.options(), self.size);
        Ok(())
    }

    /// The error a break is reported as when no attempt is left.
    fn give_up(&self, broken: TransportError, attempt: u32) -> RegistryError {
        match broken.problem() {
            TransportProblem::EndedEarly { received, .. } => self.size_mismatch(SizeProblem::EndedAt(*received)),
            _ => self.transport.network(&self.call, broken, attempt),
        }
    }

    fn finish(&mut self) {
        self.finished = true;
        self.response = None;
        self.permit = None;
    }

    fn size_mismatch(&self, actual: SizeProblem) -> RegistryError {
        RegistryError::SizeMismatch {
            registry: self.call.host.name().to_owned(),
            subject: self.call.subject.clone(),
            expected: self.size,
            actual,
        }
    }

    fn protocol(&self, message: String) -> RegistryError {
        RegistryError::protocol(self.call.host.name(), &self.call.subject, message)
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
