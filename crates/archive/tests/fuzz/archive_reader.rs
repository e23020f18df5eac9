//! `hpn_archive::ArchiveReader::open_reader` on arbitrary bytes (as from `hpn load < x.tar`),
//! then every blob each image's manifest refers to read to its end, through `read_blob` for
//! manifests and configs and `open_blob` for layers. Nothing panics or hangs, memory stays
//! bounded (the fuzzer runs with -rss_limit_mb and -timeout), what the reader promises holds
//! (manifest digests, blob sizes), and no file is left in the temp dir.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use hpn_archive::{ArchiveReader, METADATA_LIMIT};
use hpn_oci::{Digest, ParsedManifest, Reference, Sha256Hasher};

/// An input compressed as a whole is skipped when it decompresses to more than this. The
/// reader copies such an archive, decompressed, into a temp file, as it must: a 20 KB zstd
/// input can decompress to gigabytes, which costs disk and time (as a real 10 GB archive
/// does) but no memory, and would only make the fuzzer report slow inputs.
const MAX_DECOMPRESSED: u64 = 64 * 1024 * 1024;
/// Indexes of indexes: the reader refuses more than 4 levels.
const MAX_DEPTH: usize = 8;

pub fn check(data: &[u8]) {
    if decompresses_beyond_limit(data) {
        return;
    }
    open_and_read(data);
    // Nearly every mutation of a tar header breaks its checksum, and the reader rightly stops
    // there; the same input with its checksums made right gets past the headers.
    if let Some(fixed) = with_checksums_fixed(data) {
        open_and_read(&fixed);
    }
}

fn open_and_read(data: &[u8]) {
    // Memory-backed where there is one: on a disk, removing a directory costs a millisecond,
    // several times the rest of a run.
    let shm = Path::new("/dev/shm");
    let temp = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("create a temp dir");
    if let Ok(reader) = ArchiveReader::open_reader(data, Path::new("fuzz.tar"), temp.path()) {
        for image in reader.images() {
            let manifest = &image.manifest;
            assert_eq!(
                Digest::of(&manifest.bytes),
                manifest.digest,
                "an image's manifest bytes do not match its digest"
            );
            let blob = reader
                .read_blob(&manifest.digest, METADATA_LIMIT)
                .expect("an image's manifest is a blob of its archive");
            assert_eq!(blob, manifest.bytes);
            walk(&reader, &manifest.bytes, &manifest.media_type, 0, &mut HashSet::new());
            for name in &image.names {
                let _ = name.parse::<Reference>();
            }
        }
    }
    let left: Vec<_> = std::fs::read_dir(temp.path()).expect("list the temp dir").collect();
    assert!(left.is_empty(), "the reader left {left:?} in its temp dir");
}

/// Reads what a manifest (or index) refers to. The reader has already parsed every manifest
/// it returns, so they must parse here too; the blobs under them need not be intact. Each
/// blob is read once (`seen`), however many times the manifests list it.
fn walk(reader: &ArchiveReader, bytes: &[u8], media_type: &str, depth: usize, seen: &mut HashSet<Digest>) {
    let (parsed, _) = ParsedManifest::parse(bytes, Some(media_type))
        .unwrap_or_else(|error| panic!("the reader returned a {media_type} that does not parse: {error}"));
    match parsed {
        ParsedManifest::Image(manifest) => {
            if seen.insert(manifest.config.digest.clone()) {
                if let Ok(config) = reader.read_blob(&manifest.config.digest, METADATA_LIMIT) {
                    assert_eq!(Digest::of(&config), manifest.config.digest);
                    let _ = hpn_oci::ImageConfig::parse(&config);
                }
                stream(reader, &manifest.config.digest);
            }
            for layer in manifest.layers.iter().filter(|layer| seen.insert(layer.digest.clone())) {
                stream(reader, &layer.digest);
            }
        }
        ParsedManifest::Index(index) => {
            for child in &index.manifests {
                if seen.insert(child.digest.clone())
                    && depth < MAX_DEPTH
                    && let Ok(child_bytes) = reader.read_blob(&child.digest, METADATA_LIMIT)
                {
                    assert_eq!(Digest::of(&child_bytes), child.digest);
                    if ParsedManifest::parse(&child_bytes, Some(&child.media_type)).is_ok() {
                        walk(reader, &child_bytes, &child.media_type, depth + 1, seen);
                    }
                }
            }
        }
    }
}

/// Streams a blob to its end, as a transfer does; it holds exactly its size in bytes.
fn stream(reader: &ArchiveReader, digest: &Digest) {
    let size = reader.blob_size(digest);
    assert_eq!(size.is_some(), reader.contains_blob(digest));
    let mut blob = match reader.open_blob(digest) {
        Ok(Some(blob)) => blob,
        Ok(None) => {
            assert!(size.is_none());
            return;
        }
        Err(_) => return,
    };
    assert_eq!(Some(blob.size()), size);
    let mut hasher = Sha256Hasher::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        match blob.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => hasher.update(&buffer[..read]),
            Err(_) => return,
        }
    }
    assert_eq!(Some(hasher.bytes()), size, "a blob streamed other than its size");
    assert_eq!(blob.remaining(), 0);
}

/// Whether a gzip or zstd input decompresses to more than [`MAX_DECOMPRESSED`] bytes.
fn decompresses_beyond_limit(data: &[u8]) -> bool {
    let decoded: Box<dyn Read + '_> = match data {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(data)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => match zstd::stream::read::Decoder::new(data) {
            Ok(decoder) => Box::new(decoder),
            Err(_) => return false,
        },
        _ => return false,
    };
    let mut counted = 0u64;
    let mut buffer = vec![0; 1024 * 1024];
    let mut decoded = decoded.take(MAX_DECOMPRESSED + 1);
    while let Ok(read @ 1..) = decoded.read(&mut buffer) {
        counted += read as u64;
    }
    counted > MAX_DECOMPRESSED
}

/// The input with the checksum of every tar header it holds made right, walking from header
/// to header by their size fields as a tar reader does; `None` if nothing needed fixing.
fn with_checksums_fixed(data: &[u8]) -> Option<Vec<u8>> {
    const BLOCK: usize = 512;
    let mut fixed = data.to_vec();
    let mut offset = 0usize;
    let mut changed = false;
    while let Some(block) = fixed.get_mut(offset..offset.checked_add(BLOCK)?) {
        if block.iter().all(|&b| b == 0) {
            break;
        }
        let sum: u32 =
            block.iter().enumerate().map(|(at, &b)| if (148..156).contains(&at) { 32 } else { u32::from(b) }).sum();
        let field = format!("{sum:06o}\0 ");
        if block[148..156] != *field.as_bytes() {
            block[148..156].copy_from_slice(field.as_bytes());
            changed = true;
        }
        let size = octal(&block[124..136])?;
        // Links, devices, directories and FIFOs have no data, whatever their size says.
        let data_size = if matches!(block[156], b'1'..=b'6') { 0 } else { size };
        let padded = usize::try_from(data_size.div_ceil(BLOCK as u64)).ok()?.checked_mul(BLOCK)?;
        offset = offset.checked_add(BLOCK)?.checked_add(padded)?;
    }
    changed.then_some(fixed)
}

fn octal(field: &[u8]) -> Option<u64> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let mut value = 0u64;
    for &digit in field[..end].trim_ascii() {
        if !(b'0'..=b'7').contains(&digit) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(u64::from(digit - b'0'))?;
    }
    Some(value)
}
