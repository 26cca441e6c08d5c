//! Clustering values, bounds and boundaries (CASSANDRA_COMMITLOG.md §6).
//!
//! Values come in blocks of up to 32 columns, each block preceded by a vint header with two bits
//! per column: bit `2j` = empty, bit `2j+1` = null (`j` = index modulo 32). Only values that are
//! neither null nor empty are written, fixed-width or `bytes(uvint)` by the column type.

use crate::cursor::Cursor;
use crate::error::Error;

/// One clustering value: `None` = null (bounds only), `Some(empty)` = the empty value.
pub type ClusteringValue = Option<Vec<u8>>;

/// Reads one value of a column whose width is `width` (`None` = length-prefixed).
pub(crate) fn read_value<'a>(
    c: &mut Cursor<'a>,
    width: Option<usize>,
    what: &str,
) -> Result<&'a [u8], Error> {
    match width {
        Some(w) => c.bytes(w, what),
        None => c.vint_bytes(what),
    }
}

/// Reads `count` clustering values of the leading clustering columns (`widths[..count]`).
pub(crate) fn read_values(
    c: &mut Cursor<'_>,
    count: usize,
    widths: &[Option<usize>],
) -> Result<Vec<ClusteringValue>, Error> {
    let widths = widths.get(..count).ok_or_else(|| {
        Error::malformed(
            c.position(),
            format!("at most {} clustering values, got {count}", widths.len()),
        )
    })?;
    let mut out = Vec::with_capacity(count);
    for block in widths.chunks(32) {
        let header = c.uvint("clustering block header")?;
        for (j, width) in block.iter().enumerate() {
            let is_empty = header & (1u64 << (2 * j)) != 0;
            let is_null = header & (1u64 << (2 * j + 1)) != 0;
            out.push(if is_null {
                None
            } else if is_empty {
                Some(Vec::new())
            } else {
                Some(read_value(c, *width, "clustering value")?.to_vec())
            });
        }
    }
    Ok(out)
}

/// `ClusteringPrefix.Kind` of a range-tombstone marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BoundKind {
    /// Ordinal 0: exclusive end bound.
    ExclEnd,
    /// Ordinal 1: inclusive start bound (with no values: BOTTOM).
    InclStart,
    /// Ordinal 2: boundary closing exclusively and opening inclusively.
    ExclEndInclStart,
    /// Ordinal 5: boundary closing inclusively and opening exclusively.
    InclEndExclStart,
    /// Ordinal 6: inclusive end bound (with no values: TOP).
    InclEnd,
    /// Ordinal 7: exclusive start bound.
    ExclStart,
}

impl BoundKind {
    fn from_ordinal(b: u8) -> Option<Self> {
        Some(match b {
            0 => BoundKind::ExclEnd,
            1 => BoundKind::InclStart,
            2 => BoundKind::ExclEndInclStart,
            5 => BoundKind::InclEndExclStart,
            6 => BoundKind::InclEnd,
            7 => BoundKind::ExclStart,
            _ => return None,
        })
    }

    /// The serialized ordinal.
    pub fn ordinal(self) -> u8 {
        match self {
            BoundKind::ExclEnd => 0,
            BoundKind::InclStart => 1,
            BoundKind::ExclEndInclStart => 2,
            BoundKind::InclEndExclStart => 5,
            BoundKind::InclEnd => 6,
            BoundKind::ExclStart => 7,
        }
    }

    /// True for the two boundary kinds (which carry two deletion times).
    pub fn is_boundary(self) -> bool {
        matches!(
            self,
            BoundKind::ExclEndInclStart | BoundKind::InclEndExclStart
        )
    }

    /// True when a range opens here (start bounds and boundaries).
    pub fn opens(self) -> bool {
        !matches!(self, BoundKind::ExclEnd | BoundKind::InclEnd)
    }

    /// True when a range closes here (end bounds and boundaries).
    pub fn closes(self) -> bool {
        !matches!(self, BoundKind::InclStart | BoundKind::ExclStart)
    }
}

/// A bound or boundary: its kind and a prefix of the clustering values (empty = BOTTOM/TOP).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusteringBound {
    pub kind: BoundKind,
    pub values: Vec<ClusteringValue>,
}

impl ClusteringBound {
    pub(crate) fn read(c: &mut Cursor<'_>, widths: &[Option<usize>]) -> Result<Self, Error> {
        let at = c.position();
        let ordinal = c.u8("clustering bound kind")?;
        let kind = BoundKind::from_ordinal(ordinal).ok_or_else(|| {
            Error::malformed(
                at,
                format!("a bound or boundary kind, got ordinal {ordinal}"),
            )
        })?;
        let size = c.u16("clustering bound size")? as usize;
        let values = if size == 0 {
            Vec::new()
        } else {
            read_values(c, size, widths)?
        };
        Ok(ClusteringBound { kind, values })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vint::encode_uvint;

    /// Encodes clustering values like `ClusteringPrefix.serializeValuesWithoutSize`.
    pub(crate) fn encode_values(
        values: &[ClusteringValue],
        widths: &[Option<usize>],
        out: &mut Vec<u8>,
    ) {
        for (block, bw) in values.chunks(32).zip(widths.chunks(32)) {
            let mut header = 0u64;
            for (j, v) in block.iter().enumerate() {
                match v {
                    None => header |= 1 << (2 * j + 1),
                    Some(v) if v.is_empty() => header |= 1 << (2 * j),
                    Some(_) => {}
                }
            }
            encode_uvint(header, out);
            for (v, w) in block.iter().zip(bw) {
                if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                    if w.is_none() {
                        encode_uvint(v.len() as u64, out);
                    }
                    out.extend_from_slice(v);
                }
            }
        }
    }

    fn round_trip(values: Vec<ClusteringValue>, widths: &[Option<usize>]) {
        let mut b = Vec::new();
        encode_values(&values, widths, &mut b);
        let mut c = Cursor::new(&b);
        assert_eq!(read_values(&mut c, values.len(), widths).unwrap(), values);
        assert!(c.is_empty());
    }

    #[test]
    fn blocks_of_32_with_null_and_empty() {
        for n in [1usize, 31, 32, 33, 65] {
            let widths: Vec<Option<usize>> = (0..n)
                .map(|i| if i % 3 == 0 { Some(4) } else { None })
                .collect();
            let values: Vec<ClusteringValue> = (0..n)
                .map(|i| match i % 5 {
                    0 => Some((i as u32).to_be_bytes().to_vec()),
                    1 => Some(Vec::new()),
                    2 if i % 3 != 0 => Some(format!("v{i}").into_bytes()),
                    3 => None,
                    _ => Some(if i % 3 == 0 {
                        vec![0, 0, 0, 7]
                    } else {
                        b"x".to_vec()
                    }),
                })
                .collect();
            round_trip(values, &widths);
        }
    }

    #[test]
    fn empty_fixed_width_value_uses_the_empty_bit() {
        // An empty int (zero bytes) is legal: the empty bit, no value bytes.
        let mut c = Cursor::new(&[0x01]);
        assert_eq!(
            read_values(&mut c, 1, &[Some(4)]).unwrap(),
            vec![Some(vec![])]
        );
    }

    #[test]
    fn bounds() {
        // EXCL_START_BOUND(5) over an int column, INCL_END TOP.
        let b = [7, 0, 1, 0x00, 0, 0, 0, 5];
        let bound = ClusteringBound::read(&mut Cursor::new(&b), &[Some(4)]).unwrap();
        assert_eq!(bound.kind, BoundKind::ExclStart);
        assert_eq!(bound.values, vec![Some(vec![0, 0, 0, 5])]);
        let top = ClusteringBound::read(&mut Cursor::new(&[6, 0, 0]), &[Some(4)]).unwrap();
        assert_eq!(
            top,
            ClusteringBound {
                kind: BoundKind::InclEnd,
                values: vec![]
            }
        );
        assert!(top.kind.closes() && !top.kind.opens());
        // Kinds 3, 4, 8 are never markers; more values than clustering columns is corrupt.
        for kind in [3u8, 4, 8, 9, 200] {
            assert!(ClusteringBound::read(&mut Cursor::new(&[kind, 0, 0]), &[Some(4)]).is_err());
        }
        assert!(ClusteringBound::read(&mut Cursor::new(&[7, 0, 2, 0]), &[Some(4)]).is_err());
        for k in [0u8, 1, 2, 5, 6, 7] {
            assert_eq!(BoundKind::from_ordinal(k).unwrap().ordinal(), k);
        }
        assert!(BoundKind::ExclEndInclStart.is_boundary());
    }
}
