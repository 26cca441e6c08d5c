//! The `cdc_raw` directory (CASSANDRA_COMMITLOG.md §1.2–§1.4, §1.7): segment files grouped by id in
//! ascending id order, their `_cdc.idx` state, the bytes used, and deleting a finished pair.
//! Blocking file I/O: segments are read in `spawn_blocking`; the small idx files and listings
//! accept the short stall (local disk).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cdc_commitlog::{CdcIndex, SegmentFileKind, SegmentFileName};

use crate::error::Error;

/// One segment's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFiles {
    pub id: i64,
    /// The `.log` file, when present.
    pub log: Option<PathBuf>,
    /// The `_cdc.idx` file, when present. A `.log` without one holds no CDC data yet (ignore it).
    pub idx: Option<PathBuf>,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Lists the segments of `dir` in ascending id order (never by mtime). Other files are ignored.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentFiles>, Error> {
    let mut by_id: BTreeMap<i64, SegmentFiles> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io("list", dir))? {
        let entry = entry.map_err(io("list", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Ok(parsed) = SegmentFileName::parse(name) else {
            continue;
        };
        let files = by_id.entry(parsed.id).or_insert_with(|| SegmentFiles {
            id: parsed.id,
            log: None,
            idx: None,
        });
        match parsed.kind {
            SegmentFileKind::Segment => files.log = Some(entry.path()),
            SegmentFileKind::CdcIndex => files.idx = Some(entry.path()),
        }
    }
    Ok(by_id.into_values().collect())
}

/// Reads an idx file: `None` when it vanished, [`CdcIndex::NotReady`] when empty or torn.
pub fn read_idx(path: &Path) -> Result<Option<CdcIndex>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(CdcIndex::parse(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path)(e)),
    }
}

/// Reads a segment file; `None` when it vanished.
pub fn read_segment(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path)(e)),
    }
}

/// Total size of the files in `dir` (what Cassandra counts against `cdc_total_space`).
pub fn dir_bytes(dir: &Path) -> Result<u64, Error> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(io("list", dir))? {
        let entry = entry.map_err(io("list", dir))?;
        if let Ok(meta) = entry.metadata()
            && meta.is_file()
        {
            total += meta.len();
        }
    }
    Ok(total)
}

/// Deletes a finished segment's `.log` and `_cdc.idx` (the log first, so a crash in between leaves
/// an idx without a log, which [`list_segments`] callers skip). Missing files are fine.
pub fn delete_segment(files: &SegmentFiles) -> Result<(), Error> {
    for path in files.log.iter().chain(files.idx.iter()) {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("delete", path)(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str, content: &[u8]) {
        std::fs::write(dir.join(name), content).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "capture-segdir-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir: {e}"));
        dir
    }

    #[test]
    fn lists_in_id_order_pairs_idx_and_deletes() {
        let dir = tempdir();
        touch(&dir, "CommitLog-7-20.log", b"x");
        touch(&dir, "CommitLog-7-20_cdc.idx", b"123\nCOMPLETED");
        touch(&dir, "CommitLog-7-3.log", b"yy");
        touch(&dir, "CommitLog-7-100_cdc.idx", b"");
        touch(&dir, "notes.txt", b"zzz");
        let segs = list_segments(&dir).unwrap_or_default();
        let ids: Vec<_> = segs.iter().map(|s| s.id).collect();
        assert_eq!(ids, [3, 20, 100]);
        assert!(segs[0].idx.is_none());
        assert!(segs[2].log.is_none());
        let idx = segs[1].idx.as_deref().map(read_idx);
        assert!(matches!(
            idx,
            Some(Ok(Some(CdcIndex::Ready {
                offset: 123,
                completed: true
            })))
        ));
        assert!(matches!(
            segs[2].idx.as_deref().map(read_idx),
            Some(Ok(Some(CdcIndex::NotReady)))
        ));
        assert!(matches!(read_idx(&dir.join("missing_cdc.idx")), Ok(None)));
        assert_eq!(dir_bytes(&dir).ok(), Some(1 + 13 + 2 + 3));
        assert!(delete_segment(&segs[1]).is_ok());
        assert!(!dir.join("CommitLog-7-20.log").exists());
        assert!(!dir.join("CommitLog-7-20_cdc.idx").exists());
        assert!(delete_segment(&segs[1]).is_ok(), "deleting twice is fine");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
