//! The few tar pieces the writer needs, built on `tar::Header` (which gets
//! checksums and numeric encodings right) but written by us, so blob data can
//! go straight from file to file.
//!
//! Headers are ustar, like Go's archive/tar writes whenever it can, with
//! root ownership, fixed modes and one mtime for every entry: 0 unless the
//! user gives a creation time (Docker sets every file of a saved image to
//! the Unix epoch too), so the same input gives the same archive bytes.
//! Where ustar cannot say something (a name over 100 bytes, a size of 8 GiB
//! or more) a PAX extended header carries it, which GNU tar, Go, Docker,
//! containers/image and the `tar` crate all read.

use tar::{EntryType, Header};

pub(crate) const BLOCK: usize = 512;
/// The largest size ustar's 11 octal digits hold.
const USTAR_MAX_SIZE: u64 = 0o77777777777;
const USTAR_NAME_LEN: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Directory,
}

/// The header block(s) for one entry: a PAX header and its records first when
/// needed, then the ustar header, all with `mtime` (seconds since the Unix
/// epoch). Directory names should end with `/`.
pub(crate) fn entry_header(name: &str, size: u64, kind: Kind, mtime: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(BLOCK);
    let mut records = Vec::new();
    if name.len() > USTAR_NAME_LEN {
        records.extend(pax_record("path", name));
    }
    if size > USTAR_MAX_SIZE {
        records.extend(pax_record("size", &size.to_string()));
    }
    if !records.is_empty() {
        let pax_name =
            format!("PaxHeaders.0/{}", truncate(name.rsplit('/').find(|part| !part.is_empty()).unwrap_or(name), 80));
        out.extend_from_slice(ustar_header(&pax_name, records.len() as u64, EntryType::XHeader, mtime).as_bytes());
        let padded = records.len() + padding(records.len() as u64);
        records.resize(padded, 0);
        out.extend_from_slice(&records);
    }
    let entry_type = match kind {
        Kind::File => EntryType::Regular,
        Kind::Directory => EntryType::Directory,
    };
    out.extend_from_slice(ustar_header(truncate(name, USTAR_NAME_LEN), size, entry_type, mtime).as_bytes());
    out
}

fn ustar_header(name: &str, size: u64, entry_type: EntryType, mtime: u64) -> Header {
    let mut header = Header::new_ustar();
    // Written directly rather than through set_path, which would drop the
    // trailing `/` of directory names that Go and Docker write.
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    // For sizes past ustar's range this falls back to GNU base-256; readers
    // that know PAX take the size from the record instead.
    header.set_size(size);
    header.set_mode(if entry_type == EntryType::Directory { 0o755 } else { 0o644 });
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_entry_type(entry_type);
    header.set_cksum();
    header
}

/// Cuts at a char boundary at or below `max` bytes.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `"<len> <key>=<value>\n"`, where `<len>` counts the whole record including
/// its own digits.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    format!("{len} {key}={value}\n").into_bytes()
}

/// Zero bytes that bring an entry of `size` bytes to a block boundary.
pub(crate) fn padding(size: u64) -> usize {
    (BLOCK - (size % BLOCK as u64) as usize) % BLOCK
}

pub(crate) const ZEROS: [u8; BLOCK] = [0; BLOCK];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself_across_digit_boundaries() {
        for value_len in [0, 1, 85, 86, 87, 88, 89, 90, 91, 95, 96, 97, 980, 990, 995, 996, 997, 1000] {
            let record = pax_record("path", &"a".repeat(value_len));
            let text = String::from_utf8(record.clone()).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), record.len(), "{text:?}");
            assert!(text.ends_with('\n'));
        }
    }

    #[test]
    fn padding_rounds_to_blocks() {
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
        assert_eq!(padding(513), 511);
    }

    #[test]
    fn short_entries_are_one_plain_ustar_block() {
        let header = entry_header("blobs/sha256/", 0, Kind::Directory, 0);
        assert_eq!(header.len(), BLOCK);
        assert_eq!(&header[..13], b"blobs/sha256/");
        assert_eq!(&header[257..263], b"ustar\0");
        assert_eq!(header[156], b'5');
    }

    #[test]
    fn huge_sizes_get_a_pax_size_record() {
        let size = 9 * 1024 * 1024 * 1024u64;
        let header = entry_header("blobs/sha256/big", size, Kind::File, 1_714_564_800);
        assert_eq!(header.len(), 3 * BLOCK);
        assert_eq!(header[156], b'x');
        let records = String::from_utf8_lossy(&header[BLOCK..2 * BLOCK]);
        assert!(records.starts_with(&format!("19 size={size}\n")), "{records:?}");
        let real = Header::from_byte_slice(&header[2 * BLOCK..]);
        assert_eq!(real.size().unwrap(), size, "base-256 fallback for non-PAX readers");
        assert_eq!(real.mtime().unwrap(), 1_714_564_800);
        assert_eq!(Header::from_byte_slice(&header[..BLOCK]).mtime().unwrap(), 1_714_564_800, "the PAX header's own");
    }
}
