use std::io::{self, Read};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use hpn_oci::{BlobStream, Descriptor, Digest, RawManifest, Reference, limits};
use hpn_store::Store;
use tokio::sync::mpsc;

use crate::endpoint::{BlobContent, BlobReuse, CopiedImage, ImageDestination, ImageSource, parse_manifest};
use crate::error::TransferError;

/// Chunks in flight between a download and the thread writing it: bounds memory per blob.
const STREAM_CHANNEL_DEPTH: usize = 16;

/// Runs store (file system) work on the blocking pool, never on the async workers.
async fn blocking<T, F>(store: &Arc<Store>, work: F) -> Result<T, TransferError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, TransferError> + Send + 'static,
{
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || work(&store)).await.map_err(|join| TransferError::task_failed("store", join))?
}

/// The store's name for an image: the full reference, digest refs included.
fn ref_name(image: &Reference) -> String {
    image.to_string()
}

/// Reads images that an earlier pull put in the store.
#[derive(Debug, Clone)]
pub struct StoreSource {
    store: Arc<Store>,
}

impl StoreSource {
    /// Reads from (or writes to) `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }
}

impl ImageSource for StoreSource {
    async fn resolve(&self, image: &Reference) -> Result<RawManifest, TransferError> {
        let name = ref_name(image);
        let descriptor = blocking(&self.store, {
            let name = name.clone();
            move |store| Ok(store.resolve_ref(&name)?)
        })
        .await?
        .ok_or_else(|| TransferError::NotInStore { name, store: self.store.root().to_owned() })?;
        self.manifest(image, &descriptor).await
    }

    async fn manifest(&self, _image: &Reference, descriptor: &Descriptor) -> Result<RawManifest, TransferError> {
        let wanted = descriptor.clone();
        blocking(&self.store, move |store| {
            if !store.has_blob(&wanted.digest) {
                return Err(TransferError::BlobMissing { digest: wanted.digest, store: store.root().to_owned() });
            }
            let bytes = store.read_blob(&wanted.digest, limits::MANIFEST)?;
            let (manifest, _) = parse_manifest(Bytes::from(bytes), Some(&wanted.media_type), || {
                format!("manifest {} in the store at {}", wanted.digest, store.root().display())
            })?;
            if manifest.digest != wanted.digest {
                return Err(TransferError::DigestMismatch {
                    what: "stored manifest",
                    expected: wanted.digest,
                    actual: manifest.digest,
                });
            }
            Ok(manifest)
        })
        .await
    }

    async fn has_manifest(&self, descriptor: &Descriptor) -> Result<bool, TransferError> {
        let digest = descriptor.digest.clone();
        blocking(&self.store, move |store| Ok(store.has_blob(&digest))).await
    }

    async fn blob(&self, _image: &Reference, descriptor: &Descriptor) -> Result<BlobContent, TransferError> {
        let digest = descriptor.digest.clone();
        blocking(&self.store, move |store| {
            if store.has_blob(&digest) {
                Ok(BlobContent::File(store.blob_path(&digest)))
            } else {
                Err(TransferError::BlobMissing { digest, store: store.root().to_owned() })
            }
        })
        .await
    }
}

/// Puts images into the store: blobs verified and renamed into place, then
/// the image's name recorded in index.json.
#[derive(Debug, Clone)]
pub struct StoreDestination {
    store: Arc<Store>,
}

impl StoreDestination {
    /// Reads from (or writes to) `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// Writes a blob into the store, verified against `descriptor`.
    async fn store_blob(&self, descriptor: &Descriptor, content: BlobContent) -> Result<(), TransferError> {
        let expected = descriptor.clone();
        match content {
            BlobContent::Bytes(bytes) => {
                blocking(&self.store, move |store| Ok(store.put_blob_bytes(&expected, &bytes)?)).await
            }
            BlobContent::File(path) => {
                blocking(&self.store, move |store| {
                    let mut file = std::fs::File::open(&path)
                        .map_err(|error| TransferError::io(format!("opening {}", path.display()), error))?;
                    let mut writer = store.begin_blob(&expected.digest, Some(expected.size))?;
                    io::copy(&mut file, &mut writer).map_err(|error| {
                        TransferError::io(format!("copying {} into the store", path.display()), error)
                    })?;
                    Ok(writer.commit()?)
                })
                .await
            }
            BlobContent::Stream(stream) => {
                let store = Arc::clone(&self.store);
                drain_on_blocking_thread(stream, move |reader| {
                    let mut writer = store.begin_blob(&expected.digest, Some(expected.size))?;
                    io::copy(reader, &mut writer).map_err(|error| {
                        TransferError::io(format!("writing blob {} into the store", expected.digest), error)
                    })?;
                    Ok(writer.commit()?)
                })
                .await
            }
        }
    }
}

impl ImageDestination for StoreDestination {
    async fn recorded_image(&self, name: &Reference) -> Result<Option<Descriptor>, TransferError> {
        let name = ref_name(name);
        blocking(&self.store, move |store| Ok(store.resolve_ref(&name)?)).await
    }

    async fn cached(&self, digest: &Digest, limit: u64) -> Result<Option<Bytes>, TransferError> {
        let digest = digest.clone();
        blocking(&self.store, move |store| {
            if !store.has_blob(&digest) {
                return Ok(None);
            }
            Ok(Some(Bytes::from(store.read_blob(&digest, limit)?)))
        })
        .await
    }

    /// The reuse check of this destination changes nothing (no mounts).
    async fn holds_blob(&self, target: &Reference, descriptor: &Descriptor) -> Result<bool, TransferError> {
        Ok(self.try_reuse_blob(target, descriptor, target).await?.is_reused())
    }

    async fn try_reuse_blob(
        &self,
        _target: &Reference,
        descriptor: &Descriptor,
        _source: &Reference,
    ) -> Result<BlobReuse, TransferError> {
        let (digest, size) = (descriptor.digest.clone(), descriptor.size);
        let present = blocking(&self.store, move |store| match store.blob_size(&digest)? {
            Some(stored) if stored == size => Ok(true),
            Some(stored) => {
                // Only a crash before the kernel wrote the blob back leaves this; fetched
                // again, the good copy replaces it.
                tracing::warn!(%digest, stored, size, store = %store.root().display(), "a stored blob has the wrong size; fetching it again");
                Ok(false)
            }
            None => Ok(false),
        })
        .await?;
        if !present {
            return Ok(BlobReuse::Absent);
        }
        Ok(BlobReuse::Present)
    }

    async fn put_blob(
        &self,
        _target: &Reference,
        descriptor: &Descriptor,
        content: BlobContent,
    ) -> Result<(), TransferError> {
        self.store_blob(descriptor, content).await?;
        Ok(())
    }

    async fn put_manifest(&self, _target: &Reference, manifest: &RawManifest) -> Result<(), TransferError> {
        let (descriptor, bytes) = (manifest.descriptor(), manifest.bytes.clone());
        blocking(&self.store, move |store| Ok(store.put_blob_bytes(&descriptor, &bytes)?)).await
    }

    async fn commit(&self, image: &CopiedImage) -> Result<(), TransferError> {
        let (name, descriptor, bytes) = (ref_name(&image.destination), image.top.descriptor(), image.top.bytes.clone());
        blocking(&self.store, move |store| {
            store.put_blob_bytes(&descriptor, &bytes)?;
            Ok(store.set_ref(&name, &descriptor)?)
        })
        .await
    }
}

/// Feeds an async stream to blocking code as a `Read`, through a bounded
/// channel: the download and the hashing + writing overlap, and memory stays
/// at a few chunks whatever the blob's size. A stream error wins over the
/// I/O error the reader then sees, so the user is told the real cause.
pub(crate) async fn drain_on_blocking_thread<T, F>(mut stream: BlobStream, consume: F) -> Result<T, TransferError>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn Read) -> Result<T, TransferError> + Send + 'static,
{
    let (sender, receiver) = mpsc::channel::<Option<Bytes>>(STREAM_CHANNEL_DEPTH);
    let consumer = tokio::task::spawn_blocking(move || {
        let mut reader = ChannelReader { receiver, current: Bytes::new(), failed: false };
        consume(&mut reader)
    });
    let mut stream_error = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                if sender.send(Some(chunk)).await.is_err() {
                    break; // the consumer stopped early; its result says why
                }
            }
            Err(error) => {
                let _ = sender.send(None).await;
                stream_error = Some(TransferError::from_stream(error));
                break;
            }
        }
    }
    drop(sender);
    let consumed = consumer.await.map_err(|join| TransferError::task_failed("blob writer", join))?;
    match stream_error {
        Some(error) => Err(error),
        None => consumed,
    }
}

/// `None` in the channel means the stream failed: reading then errors, so a
/// partial blob is never committed as if it had ended.
struct ChannelReader {
    receiver: mpsc::Receiver<Option<Bytes>>,
    current: Bytes,
    failed: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.failed {
                return Err(io::Error::other("the source stream failed"));
            }
            match self.receiver.blocking_recv() {
                Some(Some(chunk)) => self.current = chunk,
                Some(None) => self.failed = true,
                None => return Ok(0),
            }
        }
        let count = buffer.len().min(self.current.len());
        buffer[..count].copy_from_slice(&self.current.split_to(count));
        Ok(count)
    }
}
