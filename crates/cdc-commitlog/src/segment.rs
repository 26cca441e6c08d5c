//! Reading a segment: the sync-section chain and the mutation entries inside it
//! (CASSANDRA_COMMITLOG.md §1.7, §2.3–§2.6).
//!
//! The reader works on the bytes of the file as read so far and never reads past the caller's
//! durable limit (the `_cdc.idx` offset) unless the segment is COMPLETED. All positions are
//! logical: file offsets for uncompressed segments, the writer's uncompressed-buffer positions for
//! compressed ones — the coordinates `_cdc.idx` and Cassandra's `CommitLogPosition` use.
//!
//! Per entry it yields `(start, end, Result<MutationOutcome>)`; `end` (the position after the
//! entry's second CRC) is the checkpoint value: resume with `resume_after = end` to continue after
//! that entry. Framing errors that make the rest of a section unreadable are yielded as `Err` and the
//! reader moves on to the next section; a corrupt sync marker ends the reading
//! ([`SegmentEnd::Failed`]). Why the reading stopped is in [`SegmentReader::end`].

use std::borrow::Cow;

use crate::compression::Decompressor;
use crate::descriptor::SegmentDescriptor;
use crate::error::Error;
use crate::mutation::{MutationOutcome, decode_mutation};
use crate::schema::SchemaLookup;
use crate::sync::{MARKER_SIZE, Marker, marker_crc};

/// How far the reader may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLimit {
    /// Only sync sections that end at or before this logical position (the `_cdc.idx` offset of a
    /// segment that is still being written).
    UpTo(u64),
    /// The segment is closed (`_cdc.idx` says COMPLETED): read to the zero marker or end of file.
    Completed,
}

/// Where to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    pub limit: ReadLimit,
    /// Skip entries whose end position is `<=` this (a checkpoint). 0 reads from the start.
    pub resume_after: u64,
}

/// Why the reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentEnd {
    /// The segment has no more data: a zero sync marker, a zero-size entry, or the end of the
    /// file of a completed segment.
    EndOfSegment { position: u64 },
    /// The durable limit was reached; read again when `_cdc.idx` advances.
    LimitReached { position: u64 },
    /// The bytes end before the durable limit (the file was read before the writer's data reached
    /// it): read again with more bytes.
    Incomplete { position: u64 },
    /// A corrupt sync marker: the marker chain cannot be followed beyond `position`.
    Failed { position: u64 },
}

/// One mutation entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutationEntry {
    /// Logical position of the entry's size field.
    pub start: u64,
    /// Logical position after the entry (Cassandra's CommitLogPosition for the mutation).
    pub end: u64,
    /// The stored CRC over the entry (size + mutation bytes). It does not depend on the position,
    /// so it is a cheap first-level fingerprint for deduplicating the same mutation across
    /// replicas (confirm with the bytes or a stronger hash; CRC-32 collides).
    pub checksum: u32,
    pub result: Result<MutationOutcome, Error>,
}

struct Section<'a> {
    data: Cow<'a, [u8]>,
    logical_start: u64,
    cursor: usize,
}

/// Iterates the mutation entries of one segment. See the module docs.
pub struct SegmentReader<'a, S: SchemaLookup + ?Sized> {
    bytes: &'a [u8],
    descriptor: SegmentDescriptor,
    decompressor: Option<Decompressor>,
    schema: &'a S,
    options: ReadOptions,
    next_marker: usize,
    next_logical: u64,
    section: Option<Section<'a>>,
    end: Option<SegmentEnd>,
}

impl<'a, S: SchemaLookup + ?Sized> SegmentReader<'a, S> {
    /// Parses the descriptor and prepares to read. Fails for a bad or short header, an
    /// unsupported version or compressor, and encrypted segments.
    pub fn new(bytes: &'a [u8], schema: &'a S, options: ReadOptions) -> Result<Self, Error> {
        let descriptor = SegmentDescriptor::parse(bytes)?;
        let decompressor = Decompressor::for_segment(&descriptor)?;
        let header_len = descriptor.header_len;
        Ok(SegmentReader {
            bytes,
            descriptor,
            decompressor,
            schema,
            options,
            next_marker: header_len,
            next_logical: header_len as u64,
            section: None,
            end: None,
        })
    }

    pub fn descriptor(&self) -> &SegmentDescriptor {
        &self.descriptor
    }

    /// Why reading stopped; `None` while entries may still follow.
    pub fn end(&self) -> Option<SegmentEnd> {
        self.end
    }

    fn completed(&self) -> bool {
        self.options.limit == ReadLimit::Completed
    }

    fn stop(&mut self, end: SegmentEnd) {
        self.section = None;
        self.end = Some(end);
    }

    /// Moves to the next readable sync section. `None` once `end` is set; `Some(Err)` for a
    /// section that cannot be used (the chain continues unless `end` was set).
    fn advance_section(&mut self) -> Option<Result<(), Error>> {
        loop {
            let pos = self.next_marker;
            let lpos = self.next_logical;
            let id = self.descriptor.id;
            if let ReadLimit::UpTo(limit) = self.options.limit
                && lpos >= limit
            {
                self.stop(SegmentEnd::LimitReached { position: lpos });
                return None;
            }
            let Some(marker) = Marker::read(self.bytes, pos) else {
                let end = if self.completed() {
                    SegmentEnd::EndOfSegment { position: lpos }
                } else {
                    SegmentEnd::Incomplete { position: lpos }
                };
                self.stop(end);
                return None;
            };
            let expected_crc = marker_crc(id, pos as u32);
            if marker.crc != expected_crc {
                if marker.is_zero() {
                    self.stop(SegmentEnd::EndOfSegment { position: lpos });
                    return None;
                }
                self.stop(SegmentEnd::Failed { position: lpos });
                return Some(Err(Error::SyncMarkerCorrupt {
                    segment_id: id,
                    file_offset: pos as u64,
                    next: marker.next,
                    stored_crc: marker.crc,
                    expected_crc,
                }));
            }
            let header = MARKER_SIZE + if self.decompressor.is_some() { 4 } else { 0 };
            let bad_position = |file_len: usize| Error::SyncMarkerBadPosition {
                segment_id: id,
                file_offset: pos as u64,
                next: marker.next,
                file_len: file_len as u64,
            };
            let next = match usize::try_from(marker.next) {
                Ok(n) if n >= pos + header => n,
                _ => {
                    self.stop(SegmentEnd::Failed { position: lpos });
                    return Some(Err(bad_position(self.bytes.len())));
                }
            };
            if next > self.bytes.len() {
                if self.completed() {
                    self.stop(SegmentEnd::Failed { position: lpos });
                    return Some(Err(bad_position(self.bytes.len())));
                }
                self.stop(SegmentEnd::Incomplete { position: lpos });
                return None;
            }
            let data_start = pos + header;
            let logical_data_start = lpos + MARKER_SIZE as u64;
            let (logical_end, raw) = match self.decompressor {
                None => (next as u64, self.bytes.get(data_start..next)),
                Some(_) => {
                    let len = self
                        .bytes
                        .get(pos + MARKER_SIZE..data_start)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map(i32::from_be_bytes);
                    match len.map(u64::try_from) {
                        Some(Ok(len)) => {
                            (logical_data_start + len, self.bytes.get(data_start..next))
                        }
                        _ => {
                            self.stop(SegmentEnd::Failed { position: lpos });
                            return Some(Err(Error::Malformed {
                                segment_id: Some(id),
                                position: lpos,
                                expected: "a non-negative uncompressed section length".into(),
                            }));
                        }
                    }
                }
            };
            let Some(raw) = raw else {
                self.stop(SegmentEnd::Failed { position: lpos });
                return Some(Err(bad_position(self.bytes.len())));
            };
            if let ReadLimit::UpTo(limit) = self.options.limit
                && logical_end > limit
            {
                self.stop(SegmentEnd::LimitReached { position: lpos });
                return None;
            }
            self.next_marker = next;
            self.next_logical = logical_end;
            if logical_end <= self.options.resume_after {
                continue; // Everything in this section was processed before.
            }
            let data = match self.decompressor {
                None => Cow::Borrowed(raw),
                Some(d) => {
                    let expected = (logical_end - logical_data_start) as usize;
                    match d.decompress(raw, expected) {
                        Ok(v) => Cow::Owned(v),
                        Err(detail) => {
                            return Some(Err(Error::Decompression {
                                segment_id: id,
                                file_offset: pos as u64,
                                detail,
                            }));
                        }
                    }
                }
            };
            self.section = Some(Section {
                data,
                logical_start: logical_data_start,
                cursor: 0,
            });
            return Some(Ok(()));
        }
    }

    /// The next entry of the current section; `None` when the section is exhausted, abandoned
    /// (after yielding the error) or the segment ended.
    fn next_entry(&mut self) -> Option<Result<MutationEntry, Error>> {
        let id = self.descriptor.id;
        let version = self.descriptor.version;
        // Taken out while reading; put back only when entries may follow.
        let mut section = self.section.take()?;
        loop {
            let data: &[u8] = &section.data;
            let cur = section.cursor;
            let start = section.logical_start + cur as u64;
            let rest = data.get(cur..).unwrap_or_default();
            let Some((size_bytes, after_size)) = rest.split_first_chunk::<4>() else {
                // Fewer than 4 bytes left: Cassandra stops reading the section.
                return None;
            };
            let size = i32::from_be_bytes(*size_bytes);
            if size == 0 {
                self.stop(SegmentEnd::EndOfSegment { position: start });
                return None;
            }
            let size = match usize::try_from(size) {
                Ok(s) if s >= 10 => s,
                _ => {
                    return Some(Err(malformed(
                        id,
                        start,
                        format!("a mutation size >= 10, got {size}"),
                    )));
                }
            };
            let Some((crc1, body_and_crc)) = after_size.split_first_chunk::<4>() else {
                return Some(Err(malformed(
                    id,
                    start,
                    "the entry size CRC inside the section",
                )));
            };
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(size_bytes);
            if u32::from_be_bytes(*crc1) != hasher.clone().finalize() {
                return Some(Err(Error::EntrySizeCrcMismatch {
                    segment_id: id,
                    position: start,
                }));
            }
            let body = body_and_crc.get(..size);
            let crc2 = body_and_crc
                .get(size..size + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok());
            let (Some(body), Some(crc2)) = (body, crc2) else {
                return Some(Err(malformed(
                    id,
                    start,
                    format!(
                        "an entry of {} bytes inside the sync section ({} remain)",
                        size + 12,
                        rest.len()
                    ),
                )));
            };
            let total = 12 + size;
            let end = start + total as u64;
            let checksum = u32::from_be_bytes(crc2);
            if end <= self.options.resume_after {
                section.cursor = cur + total;
                continue;
            }
            hasher.update(body);
            let result = if hasher.finalize() != checksum {
                Err(Error::EntryCrcMismatch {
                    segment_id: id,
                    position: start,
                })
            } else {
                decode_mutation(body, version, self.schema).map_err(|e| e.in_segment(id, start + 8))
            };
            section.cursor = cur + total;
            self.section = Some(section);
            return Some(Ok(MutationEntry {
                start,
                end,
                checksum,
                result,
            }));
        }
    }
}

fn malformed(segment_id: i64, position: u64, expected: impl Into<String>) -> Error {
    Error::Malformed {
        segment_id: Some(segment_id),
        position,
        expected: expected.into(),
    }
}

impl<S: SchemaLookup + ?Sized> Iterator for SegmentReader<'_, S> {
    type Item = Result<MutationEntry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.end.is_some() {
                return None;
            }
            if self.section.is_some() {
                if let Some(item) = self.next_entry() {
                    return Some(item);
                }
                continue;
            }
            match self.advance_section()? {
                Ok(()) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
