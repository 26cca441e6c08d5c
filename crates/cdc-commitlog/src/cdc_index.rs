//! `_cdc.idx` content (CASSANDRA_COMMITLOG.md §1.3): a decimal offset, optionally followed by
//! `\nCOMPLETED`.
//!
//! Cassandra rewrites the file by truncate-then-write with no fsync, so a reader can see it empty
//! or torn. A prefix of a valid content that is not itself valid (`""`, `"123\n"`, `"123\nCOMP"`) is
//! [`CdcIndex::NotReady`]: read it again later. A torn offset (`"12"` of `"1234"`) cannot be told
//! apart from a real one; the caller must never move its limit backwards (keep the maximum seen).

use crate::error::Error;

const COMPLETED: &str = "COMPLETED";

/// The state an `_cdc.idx` file reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CdcIndex {
    /// Empty or torn mid-write: retry the read later.
    NotReady,
    /// The segment is durable up to `offset` (a logical position, see §2.4); `completed` means the
    /// segment is closed and may be read to its end.
    Ready { offset: u64, completed: bool },
}

impl CdcIndex {
    /// Parses the file content.
    pub fn parse(content: &[u8]) -> Result<Self, Error> {
        let bad = || Error::CdcIndexMalformed {
            content: String::from_utf8_lossy(content).chars().take(64).collect(),
        };
        let text = std::str::from_utf8(content).map_err(|_| bad())?;
        // Tolerate a trailing newline (and CRLF) although Cassandra writes none.
        let text = text.trim_end_matches(['\n', '\r']);
        let (offset, rest) = match text.split_once('\n') {
            Some((o, r)) => (o.trim_end_matches('\r'), Some(r.trim())),
            None => (text, None),
        };
        if offset.is_empty() {
            return if rest.is_none() {
                Ok(CdcIndex::NotReady)
            } else {
                Err(bad())
            };
        }
        if !offset.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let offset: u64 = offset.parse().map_err(|_| bad())?;
        match rest {
            None => Ok(CdcIndex::Ready {
                offset,
                completed: false,
            }),
            Some(r) if r == COMPLETED => Ok(CdcIndex::Ready {
                offset,
                completed: true,
            }),
            Some(r) if COMPLETED.starts_with(r) => Ok(CdcIndex::NotReady),
            Some(_) => Err(bad()),
        }
    }

    /// The read limit this state allows, `None` when not ready.
    pub fn limit(self) -> Option<crate::ReadLimit> {
        match self {
            CdcIndex::NotReady => None,
            CdcIndex::Ready {
                completed: true, ..
            } => Some(crate::ReadLimit::Completed),
            CdcIndex::Ready { offset, .. } => Some(crate::ReadLimit::UpTo(offset)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(offset: u64, completed: bool) -> CdcIndex {
        CdcIndex::Ready { offset, completed }
    }

    #[test]
    fn contents() {
        assert_eq!(CdcIndex::parse(b"").unwrap(), CdcIndex::NotReady);
        assert_eq!(CdcIndex::parse(b"1234").unwrap(), ready(1234, false));
        assert_eq!(CdcIndex::parse(b"1234\n").unwrap(), ready(1234, false));
        assert_eq!(CdcIndex::parse(b"82\nCOMPLETED").unwrap(), ready(82, true));
        assert_eq!(
            CdcIndex::parse(b"82\nCOMPLETED\n").unwrap(),
            ready(82, true)
        );
        assert_eq!(
            CdcIndex::parse(b"82\r\nCOMPLETED\r\n").unwrap(),
            ready(82, true)
        );
        assert_eq!(CdcIndex::parse(b"82\nCOMP").unwrap(), CdcIndex::NotReady);
        assert_eq!(CdcIndex::parse(b"82\nC").unwrap(), CdcIndex::NotReady);
        assert!(CdcIndex::parse(b"abc").is_err());
        assert!(CdcIndex::parse(b"12\nDONE").is_err());
        assert!(CdcIndex::parse(b"\nCOMPLETED").is_err());
        assert!(CdcIndex::parse(b"-1").is_err());
        assert!(CdcIndex::parse(&[0xff, 0xfe]).is_err());
        assert!(CdcIndex::parse(b"99999999999999999999999").is_err());
    }

    #[test]
    fn limits() {
        assert_eq!(CdcIndex::NotReady.limit(), None);
        assert_eq!(ready(9, false).limit(), Some(crate::ReadLimit::UpTo(9)));
        assert_eq!(ready(9, true).limit(), Some(crate::ReadLimit::Completed));
    }
}
