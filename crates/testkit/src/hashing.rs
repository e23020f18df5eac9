//! A writer that hashes what passes through it, for tests that write a blob and need its digest.

use std::io::{self, Write};

use sha2::{Digest as _, Sha256};

/// Passes every byte on to `inner` and hashes it on the way (sha256, with hpn's own hashing
/// left out, so a test never checks hpn's digests with hpn's code): one pass gives a layer's
/// file, its digest and its size.
///
/// ```
/// use std::io::Write;
/// let mut writer = hpn_testkit::HashingWriter::new(Vec::new());
/// writer.write_all(b"abc").unwrap();
/// let (digest, len, bytes) = writer.finish();
/// assert_eq!(digest, hpn_testkit::sha256_digest(b"abc"));
/// assert_eq!((len, bytes.as_slice()), (3, &b"abc"[..]));
/// ```
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Hashes what is written to `inner`.
    pub fn new(inner: W) -> HashingWriter<W> {
        HashingWriter { inner, hasher: Sha256::new(), len: 0 }
    }

    /// `("sha256:<hex>", bytes written, the inner writer)`. Flush first if `inner` buffers.
    pub fn finish(self) -> (String, u64, W) {
        (format!("sha256:{}", hex::encode(self.hasher.finalize())), self.len, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `"sha256:<hex>"` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
