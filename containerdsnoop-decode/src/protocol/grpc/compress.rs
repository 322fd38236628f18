//! gRPC message decompression (`grpc-encoding`: gzip, deflate), capped so that a small
//! compressed message cannot expand into gigabytes.

use std::fmt;
use std::io::Read;

use flate2::read::{DeflateDecoder, GzDecoder, ZlibDecoder};

/// A `grpc-encoding` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Deflate,
    Other(String),
}

impl Encoding {
    /// `None` (header absent) means identity.
    pub fn from_header(value: Option<&str>) -> Encoding {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            None => Encoding::Identity,
            Some(v) if v == "identity" || v.is_empty() => Encoding::Identity,
            Some(v) if v == "gzip" => Encoding::Gzip,
            Some(v) if v == "deflate" => Encoding::Deflate,
            Some(v) => Encoding::Other(v),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecompressError {
    /// The compressed flag is set but the stream declared no (or identity) encoding.
    NoEncoding,
    Unsupported(String),
    Corrupt(String),
    /// The output would exceed the cap.
    TooLarge {
        cap: usize,
    },
}

impl fmt::Display for DecompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecompressError::NoEncoding => write!(f, "compressed message without grpc-encoding"),
            DecompressError::Unsupported(e) => write!(f, "unsupported grpc-encoding {e}"),
            DecompressError::Corrupt(e) => write!(f, "decompression failed: {e}"),
            DecompressError::TooLarge { cap } => write!(f, "decompressed size exceeds {cap} bytes"),
        }
    }
}

impl std::error::Error for DecompressError {}

/// Decompresses one message. Reads at most `cap + 1` bytes of output, so the work and memory
/// are bounded whatever the input claims.
pub fn decompress(
    encoding: &Encoding,
    data: &[u8],
    cap: usize,
) -> Result<Vec<u8>, DecompressError> {
    match encoding {
        Encoding::Identity => Err(DecompressError::NoEncoding),
        Encoding::Other(e) => Err(DecompressError::Unsupported(e.clone())),
        Encoding::Gzip => read_capped(GzDecoder::new(data), cap),
        // "deflate" in HTTP (and gRPC implementations) is zlib-wrapped (RFC 1950); some senders
        // use raw deflate (RFC 1951), so fall back to it.
        Encoding::Deflate => match read_capped(ZlibDecoder::new(data), cap) {
            Err(DecompressError::Corrupt(_)) => read_capped(DeflateDecoder::new(data), cap),
            other => other,
        },
    }
}

fn read_capped(r: impl Read, cap: usize) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    let limit = (cap as u64).saturating_add(1);
    r.take(limit)
        .read_to_end(&mut out)
        .map_err(|e| DecompressError::Corrupt(e.to_string()))?;
    if out.len() > cap {
        return Err(DecompressError::TooLarge { cap });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use std::io::Write;

    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_and_deflate_round_trip() {
        assert_eq!(
            decompress(&Encoding::Gzip, &gzip(b"hello"), 100).unwrap(),
            b"hello"
        );
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(b"zlib").unwrap();
        assert_eq!(
            decompress(&Encoding::Deflate, &z.finish().unwrap(), 100).unwrap(),
            b"zlib"
        );
        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), Compression::default());
        d.write_all(b"raw").unwrap();
        assert_eq!(
            decompress(&Encoding::Deflate, &d.finish().unwrap(), 100).unwrap(),
            b"raw"
        );
    }

    #[test]
    fn gzip_bomb_is_capped() {
        // 64 MiB of zeros compresses to ~64 KiB.
        let mut e = GzEncoder::new(Vec::new(), Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            e.write_all(&zeros).unwrap();
        }
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 200_000);
        assert_eq!(
            decompress(&Encoding::Gzip, &bomb, 1 << 20),
            Err(DecompressError::TooLarge { cap: 1 << 20 })
        );
    }

    #[test]
    fn garbage_and_unknown_encodings_fail_cleanly() {
        assert!(matches!(
            decompress(&Encoding::Gzip, b"not gzip", 100),
            Err(DecompressError::Corrupt(_))
        ));
        assert!(matches!(
            decompress(&Encoding::Deflate, &[0xff; 10], 100),
            Err(DecompressError::Corrupt(_))
        ));
        assert_eq!(
            decompress(&Encoding::from_header(Some("snappy")), b"x", 100),
            Err(DecompressError::Unsupported("snappy".into()))
        );
        assert_eq!(
            decompress(&Encoding::from_header(None), b"x", 100),
            Err(DecompressError::NoEncoding)
        );
    }
}
