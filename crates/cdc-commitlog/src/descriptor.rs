//! The segment descriptor header and commit-log file names (CASSANDRA_COMMITLOG.md §2.1, §2.2).
//!
//! Header: `version i32 | id i64 | params length u16 | params JSON | crc u32`, where the CRC covers
//! the version, the id's low then high 32 bits, the params length as a 4-byte int, and the params.

use std::collections::BTreeMap;

use crate::error::Error;

/// The serialization format a segment was written with, keyed on the descriptor version (never
/// on the Cassandra product version: 5.0 writes version 7 by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FormatVersion {
    /// Descriptor version 6: Cassandra 3.0 / 3.11 (messaging 10 or 11).
    V30,
    /// Descriptor version 7: Cassandra 4.0, 4.1, and 5.0 in `CASSANDRA_4` mode (messaging 12).
    V40,
    /// Descriptor version 8: Cassandra 5.0 in `UPGRADING`/`NONE` mode (messaging 13, unsigned
    /// 32-bit local deletion times).
    V50,
}

impl FormatVersion {
    /// Maps a descriptor version; 9 (trunk, with a TCM epoch per partition update) and anything
    /// else is unsupported.
    pub fn from_descriptor_version(version: i32) -> Result<Self, Error> {
        match version {
            6 => Ok(FormatVersion::V30),
            7 => Ok(FormatVersion::V40),
            8 => Ok(FormatVersion::V50),
            _ => Err(Error::UnsupportedVersion { version }),
        }
    }

    /// The descriptor version number in the header and the file name.
    pub fn descriptor_version(self) -> i32 {
        match self {
            FormatVersion::V30 => 6,
            FormatVersion::V40 => 7,
            FormatVersion::V50 => 8,
        }
    }

    /// The `MessagingService` version the mutation bodies use (11 for 3.11; 3.0 used 10 with the
    /// same body format).
    pub fn messaging_version(self) -> u32 {
        match self {
            FormatVersion::V30 => 11,
            FormatVersion::V40 => 12,
            FormatVersion::V50 => 13,
        }
    }

    /// True when local deletion times are unsigned 32-bit (messaging ≥ 13).
    pub fn unsigned_deletion_time(self) -> bool {
        self >= FormatVersion::V50
    }
}

/// `compressionClass` / `compressionParameters` from the header JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressionParams {
    /// As written: a simple name (`LZ4Compressor`) or a fully-qualified Java class name.
    pub class: String,
    pub parameters: BTreeMap<String, String>,
}

impl CompressionParams {
    /// The class name without its Java package (`org.apache.cassandra.io.compress.LZ4Compressor`
    /// → `LZ4Compressor`).
    pub fn simple_name(&self) -> &str {
        self.class.rsplit('.').next().unwrap_or(&self.class)
    }
}

/// `encCipher` / `encKeyAlias` / `encIV` from the header JSON (transparent data encryption).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionParams {
    pub cipher: String,
    pub key_alias: String,
    pub iv_hex: Option<String>,
}

/// A parsed and CRC-checked segment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentDescriptor {
    pub version: FormatVersion,
    /// The segment id (strictly increasing per node; not a timestamp).
    pub id: i64,
    pub compression: Option<CompressionParams>,
    pub encryption: Option<EncryptionParams>,
    /// The params JSON as stored.
    pub params_json: String,
    /// Header length in bytes (18 + params length): the file offset of the first sync marker and
    /// the first logical position.
    pub header_len: usize,
}

/// Updates a CRC with a big-endian int, like Cassandra's `FBUtilities.updateChecksumInt`.
pub(crate) fn crc_update_int(hasher: &mut crc32fast::Hasher, value: u32) {
    hasher.update(&value.to_be_bytes());
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

impl SegmentDescriptor {
    /// Parses and verifies the header at the start of `bytes` (the segment file).
    ///
    /// A short buffer is [`Error::HeaderIncomplete`] (retriable: the file was just created). A
    /// descriptor version other than 6, 7 or 8 is [`Error::UnsupportedVersion`].
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let incomplete = |needed| Error::HeaderIncomplete {
            needed,
            available: bytes.len(),
        };
        if bytes.len() < 14 {
            return Err(incomplete(14));
        }
        let raw_version = be_u32(bytes, 0).ok_or_else(|| incomplete(14))?;
        let id_hi = be_u32(bytes, 4).ok_or_else(|| incomplete(14))?;
        let id_lo = be_u32(bytes, 8).ok_or_else(|| incomplete(14))?;
        let id = ((u64::from(id_hi) << 32) | u64::from(id_lo)) as i64;
        let params_len = bytes
            .get(12..14)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| incomplete(14))? as usize;
        let header_len = 18 + params_len;
        let params = bytes
            .get(14..14 + params_len)
            .ok_or_else(|| incomplete(header_len))?;
        let stored = be_u32(bytes, 14 + params_len).ok_or_else(|| incomplete(header_len))?;

        let mut h = crc32fast::Hasher::new();
        crc_update_int(&mut h, raw_version);
        crc_update_int(&mut h, id_lo);
        crc_update_int(&mut h, id_hi);
        crc_update_int(&mut h, params_len as u32);
        h.update(params);
        let computed = h.finalize();
        if computed != stored {
            return Err(Error::DescriptorCrcMismatch {
                segment_id: id,
                stored,
                computed,
            });
        }
        let version = FormatVersion::from_descriptor_version(raw_version as i32)?;
        let params_json = std::str::from_utf8(params)
            .map_err(|_| Error::Malformed {
                segment_id: Some(id),
                position: 14,
                expected: "UTF-8 descriptor parameters".into(),
            })?
            .to_owned();
        let (compression, encryption) =
            parse_params(&params_json).map_err(|what| Error::Malformed {
                segment_id: Some(id),
                position: 14,
                expected: what,
            })?;
        Ok(SegmentDescriptor {
            version,
            id,
            compression,
            encryption,
            params_json,
            header_len,
        })
    }
}

impl SegmentDescriptor {
    /// Checks the header against the file name: Cassandra reports a mismatch as a descriptor error
    /// and lets the handler decide whether to skip the file.
    pub fn check_file_name(&self, name: &SegmentFileName) -> Result<(), Error> {
        if self.id != name.id {
            return Err(Error::SegmentIdMismatch {
                header_id: self.id,
                file_id: name.id,
            });
        }
        if self.version.descriptor_version() != name.version {
            return Err(Error::UnsupportedVersion {
                version: name.version,
            });
        }
        Ok(())
    }
}

type Params = (Option<CompressionParams>, Option<EncryptionParams>);

fn parse_params(json: &str) -> Result<Params, String> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| format!("descriptor parameters as a JSON object ({e})"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| "descriptor parameters as a JSON object".to_owned())?;
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let compression = match obj.get("compressionClass") {
        None | Some(serde_json::Value::Null) => None,
        Some(class) => {
            let parameters = obj
                .get("compressionParameters")
                .and_then(|p| p.as_object())
                .map(|p| p.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                .unwrap_or_default();
            Some(CompressionParams {
                class: text(class),
                parameters,
            })
        }
    };
    let encryption = obj.get("encCipher").map(|cipher| EncryptionParams {
        cipher: text(cipher),
        key_alias: obj.get("encKeyAlias").map(text).unwrap_or_default(),
        iv_hex: obj.get("encIV").map(text),
    });
    Ok((compression, encryption))
}

/// What a `cdc_raw` / commit-log directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentFileKind {
    /// `CommitLog-<version>-<id>.log`
    Segment,
    /// `CommitLog-<version>-<id>_cdc.idx` (or the `-CDC.idx` spelling of one 4.1-era revision).
    CdcIndex,
}

/// A parsed commit-log file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFileName {
    /// The descriptor version in the name (not checked against the supported versions here).
    pub version: i32,
    pub id: i64,
    pub kind: SegmentFileKind,
}

impl SegmentFileName {
    /// Parses `CommitLog-<version>-<id>.log`, `…_cdc.idx` or `…-CDC.idx`. The legacy name
    /// without a version is rejected, as Cassandra does.
    pub fn parse(name: &str) -> Result<Self, Error> {
        let bad = || Error::FileName {
            name: name.to_owned(),
        };
        let rest = name.strip_prefix("CommitLog-").ok_or_else(bad)?;
        let (stem, kind) = if let Some(s) = rest.strip_suffix(".log") {
            (s, SegmentFileKind::Segment)
        } else if let Some(s) = rest.strip_suffix("_cdc.idx") {
            (s, SegmentFileKind::CdcIndex)
        } else if let Some(s) = rest.strip_suffix("-CDC.idx") {
            (s, SegmentFileKind::CdcIndex)
        } else {
            return Err(bad());
        };
        let (version, id) = stem.split_once('-').ok_or_else(bad)?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(version) || !digits(id) {
            return Err(bad());
        }
        Ok(SegmentFileName {
            version: version.parse().map_err(|_| bad())?,
            id: id.parse().map_err(|_| bad())?,
            kind,
        })
    }

    /// The segment file name for this version and id.
    pub fn segment_name(&self) -> String {
        format!("CommitLog-{}-{}.log", self.version, self.id)
    }

    /// The `_cdc.idx` name Cassandra 4.0+ writes for this segment.
    pub fn cdc_index_name(&self) -> String {
        format!("CommitLog-{}-{}_cdc.idx", self.version, self.id)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a header the way `CommitLogDescriptor.writeHeader` does.
    pub(crate) fn header(version: i32, id: i64, params: &str) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&(params.len() as u16).to_be_bytes());
        out.extend_from_slice(params.as_bytes());
        let mut h = crc32fast::Hasher::new();
        crc_update_int(&mut h, version as u32);
        crc_update_int(&mut h, id as u32);
        crc_update_int(&mut h, (id as u64 >> 32) as u32);
        crc_update_int(&mut h, params.len() as u32);
        h.update(params.as_bytes());
        out.extend_from_slice(&h.finalize().to_be_bytes());
        out
    }

    #[test]
    fn spec_worked_example_header() {
        let bytes = [
            0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x7b, 0x00, 0x02,
            0x7b, 0x7d, 0x8f, 0xef, 0x28, 0xed,
        ];
        assert_eq!(header(7, 1700000000123, "{}"), bytes);
        let d = SegmentDescriptor::parse(&bytes).unwrap();
        assert_eq!(d.version, FormatVersion::V40);
        assert_eq!(d.id, 1700000000123);
        assert_eq!(d.header_len, 20);
        assert_eq!(d.compression, None);
        assert_eq!(d.encryption, None);
    }

    #[test]
    fn crc_mismatch_and_truncation() {
        let mut bytes = header(7, 1700000000123, "{}");
        for n in 0..bytes.len() {
            assert!(matches!(
                SegmentDescriptor::parse(&bytes[..n]),
                Err(Error::HeaderIncomplete { .. })
            ));
        }
        bytes[15] ^= 1;
        assert!(matches!(
            SegmentDescriptor::parse(&bytes),
            Err(Error::DescriptorCrcMismatch {
                segment_id: 1700000000123,
                ..
            })
        ));
    }

    #[test]
    fn compression_and_encryption_params() {
        let json = r#"{"compressionClass":"LZ4Compressor","compressionParameters":{}}"#;
        let d = SegmentDescriptor::parse(&header(8, 5, json)).unwrap();
        assert_eq!(d.version, FormatVersion::V50);
        assert_eq!(
            d.compression.as_ref().unwrap().simple_name(),
            "LZ4Compressor"
        );
        assert_eq!(d.header_len, 18 + json.len());

        let json = r#"{"compressionClass":"org.apache.cassandra.io.compress.SnappyCompressor","compressionParameters":{"a":"1"}}"#;
        let d = SegmentDescriptor::parse(&header(7, 5, json)).unwrap();
        let c = d.compression.unwrap();
        assert_eq!(c.simple_name(), "SnappyCompressor");
        assert_eq!(c.parameters.get("a").map(String::as_str), Some("1"));

        let json =
            r#"{"encCipher":"AES/CBC/PKCS5Padding","encIV":"00ff","encKeyAlias":"testing:1"}"#;
        let d = SegmentDescriptor::parse(&header(7, 5, json)).unwrap();
        let e = d.encryption.unwrap();
        assert_eq!(e.cipher, "AES/CBC/PKCS5Padding");
        assert_eq!(e.key_alias, "testing:1");
        assert_eq!(e.iv_hex.as_deref(), Some("00ff"));
    }

    #[test]
    fn versions() {
        assert!(SegmentDescriptor::parse(&header(6, 1, "{}")).is_ok());
        assert_eq!(
            SegmentDescriptor::parse(&header(9, 1, "{}")),
            Err(Error::UnsupportedVersion { version: 9 })
        );
        assert_eq!(
            SegmentDescriptor::parse(&header(5, 1, "{}")),
            Err(Error::UnsupportedVersion { version: 5 })
        );
        assert!(matches!(
            SegmentDescriptor::parse(&header(7, 1, "{not json")),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn header_matches_file_name() {
        let d = SegmentDescriptor::parse(&header(7, 12, "{}")).unwrap();
        let ok = SegmentFileName::parse("CommitLog-7-12.log").unwrap();
        assert_eq!(d.check_file_name(&ok), Ok(()));
        let other = SegmentFileName::parse("CommitLog-7-13.log").unwrap();
        assert_eq!(
            d.check_file_name(&other),
            Err(Error::SegmentIdMismatch {
                header_id: 12,
                file_id: 13
            })
        );
    }

    #[test]
    fn file_names() {
        let n = SegmentFileName::parse("CommitLog-7-1795703923648.log").unwrap();
        assert_eq!(
            n,
            SegmentFileName {
                version: 7,
                id: 1795703923648,
                kind: SegmentFileKind::Segment
            }
        );
        assert_eq!(n.cdc_index_name(), "CommitLog-7-1795703923648_cdc.idx");
        assert_eq!(n.segment_name(), "CommitLog-7-1795703923648.log");
        let i = SegmentFileName::parse("CommitLog-8-12_cdc.idx").unwrap();
        assert_eq!(
            (i.version, i.id, i.kind),
            (8, 12, SegmentFileKind::CdcIndex)
        );
        let i = SegmentFileName::parse("CommitLog-7-12-CDC.idx").unwrap();
        assert_eq!(
            (i.version, i.id, i.kind),
            (7, 12, SegmentFileKind::CdcIndex)
        );
        for bad in [
            "CommitLog-12.log",
            "CommitLog-7-.log",
            "CommitLog-7-1x.log",
            "commitlog-7-1.log",
            "CommitLog-7-1.idx",
            "CommitLog-7-99999999999999999999.log",
        ] {
            assert!(SegmentFileName::parse(bad).is_err(), "{bad}");
        }
    }
}
