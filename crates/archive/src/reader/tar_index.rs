//! Reads a tar file's headers once, front to back, and records where each
//! entry's data starts. Data is skipped with seeks, never read (except to
//! compare duplicates), so indexing a 10 GB archive reads a few KB of headers.
//!
//! A small parser of our own rather than the `tar` crate's `Archive`: that one
//! needs to read through every entry's data and hides the data offsets. It
//! understands what real image tools write: ustar (name prefix), GNU
//! (`././@LongLink` long names, base-256 sizes) and PAX (`path`, `linkpath`,
//! `size` records), and refuses what no image archive needs (sparse files).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::index::{self, FileEntry, Index, Location, MAX_ENTRIES, Node};
use crate::error::ArchiveError;
use crate::tar_format::BLOCK;

/// GNU long names and PAX headers are read into memory; nothing legitimate
/// comes close (PATH_MAX is 4096).
const MAX_LONG_NAME: u64 = 64 * 1024;
const MAX_PAX_HEADER: u64 = 1024 * 1024;

/// Builds the index of the tar file `file` (named `archive` in messages;
/// `decompressed` says whether it is a decompressed copy, for messages).
pub(crate) fn index_tar(file: &File, archive: &Path, decompressed: Option<&str>) -> Result<Index, ArchiveError> {
    let len = file.metadata().map_err(|error| ArchiveError::io("read the size of", archive, error))?.len();
    // The file's cursor is shared with whoever wrote it (a freshly spooled
    // temp file sits at its end); everything after this uses offsets.
    let mut cursor = file;
    cursor.seek(SeekFrom::Start(0)).map_err(|error| ArchiveError::io("seek in", archive, error))?;
    let mut indexer = Indexer {
        archive,
        file,
        len,
        reader: BufReader::with_capacity(64 * 1024, file),
        offset: 0,
        index: Index::default(),
        decompressed,
    };
    indexer.run()?;
    Ok(indexer.index)
}

struct Indexer<'a> {
    archive: &'a Path,
    file: &'a File,
    len: u64,
    reader: BufReader<&'a File>,
    /// Offset of the next unread byte of `reader`.
    offset: u64,
    index: Index,
    decompressed: Option<&'a str>,
}

/// What extended headers (PAX `x`, GNU `L`/`K`) say about the next entry.
#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    sparse: bool,
}

impl Indexer<'_> {
    fn run(&mut self) -> Result<(), ArchiveError> {
        if self.len == 0 {
            return Err(self.not_an_archive("the file is empty"));
        }
        if self.len < BLOCK as u64 {
            let mut start = vec![0; self.len as usize];
            self.file.read_exact_at(&mut start, 0).map_err(|error| ArchiveError::io("read", self.archive, error))?;
            let hint = sniff_other_format(&start);
            return Err(self.not_an_archive(&format!("it is {} bytes, too short for a tar file{hint}", self.len)));
        }
        let mut pending = Pending::default();
        let mut first = true;
        loop {
            let header_offset = self.offset;
            let Some(block) = self.read_header_block(&pending)? else { return Ok(()) };
            let header = Header::parse(&block).map_err(|reason| {
                if first {
                    self.not_an_archive(&format!("it is not a tar file ({reason}){}", sniff_other_format(&block)))
                } else {
                    self.truncated(format!("the tar header at offset {header_offset} is damaged ({reason})"))
                }
            })?;
            first = false;

            if matches!(header.kind, b'x' | b'g' | b'L' | b'K') {
                let display_name = String::from_utf8_lossy(&header.name).into_owned();
                let limit = if matches!(header.kind, b'L' | b'K') { MAX_LONG_NAME } else { MAX_PAX_HEADER };
                if header.size > limit {
                    return Err(self.bad_entry(
                        &display_name,
                        format!("its extended header is {} bytes, more than the {limit} allowed", header.size),
                    ));
                }
                let data = self.read_data(header.size, &display_name)?;
                match header.kind {
                    b'L' => pending.path = Some(trim_nuls(data)),
                    b'K' => pending.link = Some(trim_nuls(data)),
                    // Global headers would apply to every later entry; image tools
                    // never write them, and Docker's loader ignores them too.
                    b'g' => {}
                    _ => self.apply_pax(&data, &mut pending, &display_name)?,
                }
                // What an extended header says applies to the next header.
                continue;
            }

            let raw_name = pending.path.take().unwrap_or_else(|| header.name.clone());
            let display_name = String::from_utf8_lossy(&raw_name).into_owned();
            let size = pending.size.take().unwrap_or(header.size);
            let link = pending.link.take().unwrap_or_else(|| header.link_name.clone());
            let sparse = std::mem::take(&mut pending.sparse);

            let name = match index::normalize_name(&raw_name) {
                Ok(Some(name)) => name,
                // Not UTF-8: no manifest can refer to it. Skip its data.
                Ok(None) => {
                    self.skip_data(if header_only(header.kind) { 0 } else { size }, &display_name)?;
                    continue;
                }
                Err(reason) => return Err(self.bad_entry(&display_name, reason.to_owned())),
            };
            let data_size = if header_only(header.kind) { 0 } else { size };
            let data_offset = self.offset;
            if data_offset.checked_add(data_size).is_none_or(|end| end > self.len) {
                return Err(self.truncated(format!(
                    "entry {display_name:?} needs {data_size} bytes from offset {data_offset} but the file ends at {}",
                    self.len
                )));
            }
            let node = match header.kind {
                b'0' | b'\0' | b'7' if sparse => Node::Unsupported("sparse file"),
                b'0' | b'\0' | b'7' => {
                    Node::File(FileEntry { name: name.clone(), location: Location::Tar { offset: data_offset }, size })
                }
                b'1' => Node::Link { target: index::hardlink_target(&link), symbolic: false },
                b'2' => Node::Link { target: index::symlink_target(&name, &link), symbolic: true },
                b'5' => Node::Directory,
                b'3' => Node::Unsupported("character device"),
                b'4' => Node::Unsupported("block device"),
                b'6' => Node::Unsupported("FIFO"),
                b'S' => Node::Unsupported("sparse file"),
                _ => Node::Unsupported("tar entry of an unknown type"),
            };
            self.skip_data(data_size, &display_name)?;
            if name.is_empty() {
                // `./` itself, as `tar -C dir -cf x.tar .` writes.
                continue;
            }
            self.add(name, node)?;
        }
    }

    /// Adds an entry. A name seen before must describe the same thing: tar
    /// appends rather than replaces, and two different contents under one name
    /// would let the archive mean different things to different readers.
    fn add(&mut self, name: String, node: Node) -> Result<(), ArchiveError> {
        match (self.index.get(&name), &node) {
            (None, _) => {
                if self.index.len() >= MAX_ENTRIES {
                    return Err(self.bad_entry(
                        &name,
                        format!("the archive has more than {MAX_ENTRIES} entries, which no image archive has"),
                    ));
                }
                self.index.insert(name, node);
            }
            (Some(Node::Directory), Node::Directory) => {}
            (Some(Node::File(first)), Node::File(second)) => {
                if !self.same_content(first, second, &name)? {
                    return Err(
                        self.bad_entry(&name, "it appears twice in the archive with different content".to_owned())
                    );
                }
            }
            (
                Some(Node::Link { target: first, symbolic: first_symbolic }),
                Node::Link { target: second, symbolic: second_symbolic },
            ) if first == second && first_symbolic == second_symbolic => {}
            (Some(_), _) => {
                return Err(self.bad_entry(&name, "it appears twice in the archive as different things".to_owned()));
            }
        }
        Ok(())
    }

    fn same_content(&self, first: &FileEntry, second: &FileEntry, name: &str) -> Result<bool, ArchiveError> {
        if first.size != second.size {
            return Ok(false);
        }
        let (Location::Tar { offset: a }, Location::Tar { offset: b }) = (&first.location, &second.location) else {
            return Ok(false);
        };
        let mut left = vec![0; 256 * 1024];
        let mut right = vec![0; 256 * 1024];
        let mut done = 0;
        while done < first.size {
            let chunk = (first.size - done).min(left.len() as u64) as usize;
            let read = |buffer: &mut [u8], offset| {
                self.file.read_exact_at(buffer, offset).map_err(|error| {
                    ArchiveError::io(format!("read entry {name:?} (stored twice) of"), self.archive, error)
                })
            };
            read(&mut left[..chunk], a + done)?;
            read(&mut right[..chunk], b + done)?;
            if left[..chunk] != right[..chunk] {
                return Ok(false);
            }
            done += chunk as u64;
        }
        Ok(true)
    }

    fn apply_pax(&self, data: &[u8], pending: &mut Pending, entry: &str) -> Result<(), ArchiveError> {
        let bad = |reason: &str| self.bad_entry(entry, format!("its PAX header is malformed: {reason}"));
        let mut rest = data;
        while !rest.is_empty() {
            // "<length> <key>=<value>\n", the length counting the whole record.
            let space = rest.iter().position(|&b| b == b' ').ok_or_else(|| bad("no length"))?;
            let length: usize = std::str::from_utf8(&rest[..space])
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| bad("bad length"))?;
            if length <= space + 1 || length > rest.len() || rest[length - 1] != b'\n' {
                return Err(bad("bad record length"));
            }
            let record = &rest[space + 1..length - 1];
            rest = &rest[length..];
            let equals = record.iter().position(|&b| b == b'=').ok_or_else(|| bad("record without `=`"))?;
            let (key, value) = (&record[..equals], &record[equals + 1..]);
            match key {
                b"path" => pending.path = Some(value.to_vec()),
                b"linkpath" => pending.link = Some(value.to_vec()),
                b"size" => {
                    let size = std::str::from_utf8(value)
                        .ok()
                        .and_then(|text| text.parse().ok())
                        .ok_or_else(|| bad("bad size"))?;
                    pending.size = Some(size);
                }
                key if key.starts_with(b"GNU.sparse.") => pending.sparse = true,
                _ => {}
            }
        }
        Ok(())
    }

    /// The next header block; `None` at the end-of-archive marker.
    fn read_header_block(&mut self, pending: &Pending) -> Result<Option<[u8; BLOCK]>, ArchiveError> {
        let mut block = [0u8; BLOCK];
        let offset = self.offset;
        self.read_exact(&mut block).map_err(|error| match error.kind() {
            io::ErrorKind::UnexpectedEof => {
                self.truncated(format!("the archive ends at offset {} without the tar end-of-archive marker", self.len))
            }
            _ => ArchiveError::io("read", self.archive, error),
        })?;
        if block.iter().all(|&b| b == 0) {
            if pending.path.is_some() || pending.size.is_some() || pending.link.is_some() {
                return Err(self.truncated(format!("an extended header at offset {offset} is followed by no entry")));
            }
            // One zero block ends the archive for every tar reader we know of;
            // the second, and anything after it, is of no interest.
            return Ok(None);
        }
        Ok(Some(block))
    }

    fn read_exact(&mut self, buffer: &mut [u8]) -> io::Result<()> {
        self.reader.read_exact(buffer)?;
        self.offset += buffer.len() as u64;
        Ok(())
    }

    /// Reads a (small, already size-checked) entry's data and its padding.
    fn read_data(&mut self, size: u64, entry: &str) -> Result<Vec<u8>, ArchiveError> {
        if self.offset.checked_add(size).is_none_or(|end| end > self.len) {
            return Err(self.truncated(format!("entry {entry:?} is cut short")));
        }
        let mut data = vec![0; size as usize];
        self.read_exact(&mut data).map_err(|error| ArchiveError::io("read", self.archive, error))?;
        self.skip_padding(size, entry)?;
        Ok(data)
    }

    /// Seeks over an entry's data and padding.
    fn skip_data(&mut self, size: u64, entry: &str) -> Result<(), ArchiveError> {
        // Checked: a hostile base-256 size can be near u64::MAX. Past the
        // check, size (and so skip) is bounded by the file length.
        if self.offset.checked_add(size).is_none_or(|end| end > self.len) {
            return Err(self.truncated(format!("entry {entry:?} is cut short")));
        }
        let skip = size + crate::tar_format::padding(size) as u64;
        // seek_relative keeps the buffer when the target is inside it.
        self.reader.seek_relative(skip as i64).map_err(|error| ArchiveError::io("seek in", self.archive, error))?;
        self.offset += skip;
        Ok(())
    }

    fn skip_padding(&mut self, size: u64, entry: &str) -> Result<(), ArchiveError> {
        let padding = crate::tar_format::padding(size) as u64;
        if padding > 0 {
            self.reader
                .seek_relative(padding as i64)
                .map_err(|error| ArchiveError::io(format!("seek past {entry:?} in"), self.archive, error))?;
            self.offset += padding;
        }
        Ok(())
    }

    fn not_an_archive(&self, reason: &str) -> ArchiveError {
        let reason = match self.decompressed {
            Some(compression) => format!("{reason}, after {compression} decompression"),
            None => reason.to_owned(),
        };
        ArchiveError::NotAnArchive { path: self.archive.to_owned(), reason }
    }

    fn truncated(&self, detail: String) -> ArchiveError {
        let detail = match self.decompressed {
            Some(compression) => format!("{detail} (in the {compression}-decompressed tar)"),
            None => detail,
        };
        ArchiveError::Truncated { path: self.archive.to_owned(), detail }
    }

    fn bad_entry(&self, entry: &str, reason: String) -> ArchiveError {
        ArchiveError::BadEntry { path: self.archive.to_owned(), entry: entry.to_owned(), reason }
    }
}

/// Follows a tar stream's headers as it passes (while it is spooled) to tell
/// where the archive ends: at the first zero block where a header is due,
/// exactly where [`index_tar`] stops reading. What follows is of no interest
/// to any reader, and is most of what a decompression bomb is made of.
///
/// It sizes entries by the same rules as the indexer (PAX `size`, header-only
/// types). A header it cannot read makes it stop judging and let everything
/// through, so it never ends an archive the indexer would read further.
#[derive(Debug, Default)]
pub(crate) struct TarEnd {
    header: Vec<u8>,
    /// Data and padding of the current entry still to pass.
    skip: u64,
    /// A PAX header's data being collected, and how much of it is still to come.
    pax: Vec<u8>,
    pax_remaining: u64,
    pax_padding: u64,
    /// What a PAX header said the next entry's size is.
    next_size: Option<u64>,
    ended: bool,
    lost: bool,
}

impl TarEnd {
    /// How many of `bytes` (the next bytes of the stream) belong to the archive:
    /// all of them until the end-of-archive block, which is the last byte kept.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> usize {
        let mut at = 0;
        while at < bytes.len() {
            if self.lost {
                return bytes.len();
            }
            if self.ended {
                return at;
            }
            let rest = &bytes[at..];
            if self.pax_remaining > 0 {
                let take = (self.pax_remaining.min(rest.len() as u64)) as usize;
                self.pax.extend_from_slice(&rest[..take]);
                self.pax_remaining -= take as u64;
                at += take;
                if self.pax_remaining == 0 {
                    self.end_pax();
                }
                continue;
            }
            if self.skip > 0 {
                let take = self.skip.min(rest.len() as u64);
                self.skip -= take;
                at += take as usize;
                continue;
            }
            let take = (BLOCK - self.header.len()).min(rest.len());
            self.header.extend_from_slice(&rest[..take]);
            at += take;
            if self.header.len() == BLOCK {
                let block: [u8; BLOCK] = std::mem::take(&mut self.header).try_into().expect("one block");
                self.on_header(&block);
            }
        }
        at
    }

    /// Whether the end-of-archive block has passed.
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    fn on_header(&mut self, block: &[u8; BLOCK]) {
        if block.iter().all(|&b| b == 0) {
            self.ended = true;
            return;
        }
        let Ok(header) = Header::parse(block) else {
            self.lost = true;
            return;
        };
        let padded = |size: u64| size.checked_add(crate::tar_format::padding(size) as u64);
        match header.kind {
            b'x' if header.size <= MAX_PAX_HEADER => {
                self.pax.clear();
                self.pax_remaining = header.size;
                self.pax_padding = crate::tar_format::padding(header.size) as u64;
                if header.size == 0 {
                    self.end_pax();
                }
            }
            b'x' => self.lost = true,
            b'g' | b'L' | b'K' => match padded(header.size) {
                Some(skip) => self.skip = skip,
                None => self.lost = true,
            },
            kind => {
                let size = self.next_size.take().unwrap_or(header.size);
                match padded(if header_only(kind) { 0 } else { size }) {
                    Some(skip) => self.skip = skip,
                    None => self.lost = true,
                }
            }
        }
    }

    /// A PAX header's records are in: the next entry may have its size there.
    fn end_pax(&mut self) {
        self.skip = self.pax_padding;
        let data = std::mem::take(&mut self.pax);
        let mut rest = data.as_slice();
        while !rest.is_empty() {
            // "<length> <key>=<value>\n"; malformed ones the indexer refuses, so stop judging.
            let record = rest.iter().position(|&b| b == b' ').and_then(|space| {
                let length = std::str::from_utf8(&rest[..space]).ok()?.parse::<usize>().ok()?;
                (length > space + 1 && length <= rest.len() && rest[length - 1] == b'\n')
                    .then(|| (&rest[space + 1..length - 1], length))
            });
            let Some((record, length)) = record else {
                self.lost = true;
                return;
            };
            if let Some(value) = record.strip_prefix(b"size=") {
                match std::str::from_utf8(value).ok().and_then(|text| text.parse().ok()) {
                    Some(size) => self.next_size = Some(size),
                    None => {
                        self.lost = true;
                        return;
                    }
                }
            }
            rest = &rest[length..];
        }
    }
}

/// Entry types whose size field says nothing about data following them (as
/// in Go's archive/tar).
fn header_only(kind: u8) -> bool {
    matches!(kind, b'1' | b'2' | b'3' | b'4' | b'5' | b'6')
}

fn trim_nuls(mut data: Vec<u8>) -> Vec<u8> {
    while data.last() == Some(&0) {
        data.pop();
    }
    data
}

/// The fields of one 512-byte header.
struct Header {
    name: Vec<u8>,
    link_name: Vec<u8>,
    size: u64,
    kind: u8,
}

impl Header {
    fn parse(block: &[u8; BLOCK]) -> Result<Self, &'static str> {
        let stored = parse_octal(&block[148..156]).ok_or("bad checksum field")?;
        let mut unsigned: u64 = 0;
        let mut signed: i64 = 0;
        for (position, &byte) in block.iter().enumerate() {
            let byte = if (148..156).contains(&position) { b' ' } else { byte };
            unsigned += u64::from(byte);
            signed += i64::from(byte as i8);
        }
        // Some old writers summed signed bytes; every reader accepts both.
        if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
            return Err("bad header checksum");
        }
        let magic = &block[257..263];
        let mut name = field(&block[..100]).to_vec();
        // POSIX ustar keeps the front of long names in `prefix`; GNU tar uses
        // those bytes for other things, so only trust it with the POSIX magic.
        if magic == b"ustar\0" {
            let prefix = field(&block[345..500]);
            if !prefix.is_empty() {
                let mut full = prefix.to_vec();
                full.push(b'/');
                full.extend_from_slice(&name);
                name = full;
            }
        }
        let size = parse_numeric(&block[124..136]).ok_or("bad size field")?;
        Ok(Self { name, link_name: field(&block[157..257]).to_vec(), size, kind: block[156] })
    }
}

/// A NUL-terminated (or full-width) text field.
fn field(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

/// An octal field padded with spaces or NULs; empty means 0.
fn parse_octal(bytes: &[u8]) -> Option<u64> {
    let text = field(bytes);
    let text = text.trim_ascii();
    let mut value: u64 = 0;
    for &digit in text {
        if !(b'0'..=b'7').contains(&digit) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(u64::from(digit - b'0'))?;
    }
    Some(value)
}

/// Octal, or GNU base-256 when the top bit of the first byte is set
/// (sizes of 8 GiB and more). Negative base-256 values are refused.
fn parse_numeric(bytes: &[u8]) -> Option<u64> {
    if bytes[0] & 0x80 == 0 {
        return parse_octal(bytes);
    }
    if bytes[0] == 0xff {
        return None;
    }
    let mut value = u64::from(bytes[0] & 0x7f);
    for &byte in &bytes[1..] {
        if value >> 56 != 0 {
            return None;
        }
        value = (value << 8) | u64::from(byte);
    }
    Some(value)
}

/// A hint for files that are some other format entirely.
fn sniff_other_format(block: &[u8]) -> &'static str {
    match block {
        [b'P', b'K', 3, 4, ..] => "; it looks like a zip file",
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => "; it is xz-compressed, which hpn does not read: decompress it first",
        [b'B', b'Z', b'h', ..] => "; it is bzip2-compressed, which hpn does not read: decompress it first",
        [first, ..] if first.is_ascii_whitespace() || *first == b'{' || *first == b'[' => {
            "; it looks like text or JSON, not an archive"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, kind: u8, size: u64) -> Vec<u8> {
        let mut header = tar::Header::new_ustar();
        header.set_path(name).unwrap();
        header.set_entry_type(tar::EntryType::new(kind));
        header.set_size(size);
        header.set_cksum();
        header.as_bytes().to_vec()
    }

    fn entry(tar: &mut Vec<u8>, name: &str, kind: u8, data: &[u8]) {
        tar.extend(header(name, kind, data.len() as u64));
        tar.extend_from_slice(data);
        tar.resize(tar.len().next_multiple_of(BLOCK), 0);
    }

    /// How much of `stream` the tracker keeps, fed in pieces of `piece` bytes.
    fn kept(stream: &[u8], piece: usize) -> usize {
        let mut end = TarEnd::default();
        let mut kept = 0;
        for chunk in stream.chunks(piece) {
            kept += end.feed(chunk);
            if end.ended() {
                break;
            }
        }
        kept
    }

    #[test]
    fn the_tar_end_is_the_first_zero_block_where_a_header_is_due() {
        let mut tar = Vec::new();
        // Data full of zero blocks must not look like the end.
        entry(&mut tar, "zeros", b'0', &[0; 3000]);
        // A symlink's size field does not count.
        tar.extend(header("link", b'2', 4096));
        // A PAX size overrides a header's, and its data is zeros too.
        let pax = b"13 size=2048\n";
        entry(&mut tar, "pax", b'x', pax);
        tar.extend(header("big", b'0', 0));
        tar.extend([0; 2048]);
        entry(&mut tar, "L", b'L', b"a/long/name\0");
        entry(&mut tar, "a/long/name", b'0', b"x");
        let end = tar.len() + BLOCK;
        let mut stream = tar.clone();
        stream.extend(vec![0; 64 * 1024]);
        for piece in [1, 7, 512, 100_000] {
            assert_eq!(kept(&stream, piece), end, "fed in pieces of {piece}");
        }
        // What is kept is what the indexer reads.
        let mut file = tempfile::tempfile().unwrap();
        io::Write::write_all(&mut file, &stream[..end]).unwrap();
        let index = index_tar(&file, Path::new("t.tar"), None).unwrap();
        assert!(index.get("a/long/name").is_some() && index.get("big").is_some());
    }

    #[test]
    fn a_header_it_cannot_read_lets_everything_through() {
        let mut stream = vec![0x42; BLOCK];
        stream.extend([0; 4 * BLOCK]);
        assert_eq!(kept(&stream, 512), stream.len());
        let mut tar = Vec::new();
        entry(&mut tar, "pax", b'x', b"not a record");
        tar.extend([0; 4 * BLOCK]);
        assert_eq!(kept(&tar, 100), tar.len());
    }

    #[test]
    fn numeric_fields() {
        assert_eq!(parse_octal(b"00000001750\0"), Some(1000));
        assert_eq!(parse_octal(b"     1750 \0"), Some(1000));
        assert_eq!(parse_octal(b"\0\0\0\0"), Some(0));
        assert_eq!(parse_octal(b"12a4"), None);
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[4..].copy_from_slice(&(9u64 << 30).to_be_bytes());
        assert_eq!(parse_numeric(&big), Some(9 << 30));
        assert_eq!(parse_numeric(&[0xff; 12]), None);
    }
}
