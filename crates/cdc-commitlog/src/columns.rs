//! Header column lists and the row column-subset encodings (CASSANDRA_COMMITLOG.md §4.4, §7).

use uuid::Uuid;

use cdc_model::TableSchema;

use crate::cursor::Cursor;
use crate::error::Error;
use crate::schema::{ColumnRef, resolve_column};

/// Reads a header column list (`n`, then `n` names) and resolves each name against the schema,
/// keeping the serialized order. An unresolvable name is [`Error::UnknownColumn`] (schema stale).
pub(crate) fn read_column_list(
    c: &mut Cursor<'_>,
    table: &TableSchema,
    table_id: Uuid,
) -> Result<Vec<ColumnRef>, Error> {
    let n = c.count("header column count")?;
    let mut out = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let at = c.position();
        let raw = c.vint_bytes("header column name")?;
        let name =
            std::str::from_utf8(raw).map_err(|_| Error::malformed(at, "a UTF-8 column name"))?;
        let column = resolve_column(table, name).ok_or_else(|| Error::UnknownColumn {
            table_id,
            column: name.to_owned(),
        })?;
        out.push(column);
    }
    Ok(out)
}

/// Reads a columns subset relative to a superset of `n` columns; returns the indices of the
/// present columns in superset order.
pub(crate) fn read_subset(c: &mut Cursor<'_>, n: usize) -> Result<Vec<usize>, Error> {
    let at = c.position();
    let encoded = c.uvint("columns subset")?;
    if encoded == 0 {
        return Ok((0..n).collect());
    }
    if n < 64 {
        // A bitmap of missing columns.
        if n < 64 && (encoded >> n) != 0 {
            return Err(Error::malformed(
                at,
                format!("a subset bitmap over {n} columns, got {encoded:#x}"),
            ));
        }
        return Ok((0..n).filter(|i| encoded & (1u64 << i) == 0).collect());
    }
    // Large subset: `encoded` is the count of missing columns.
    let delta = match usize::try_from(encoded) {
        Ok(d) if d <= n => d,
        _ => {
            return Err(Error::malformed(
                at,
                format!("a missing-column count <= {n}, got {encoded}"),
            ));
        }
    };
    let present = n - delta;
    let read_index = |c: &mut Cursor<'_>, min: usize| -> Result<usize, Error> {
        let at = c.position();
        let v = c.uvint("subset column index")?;
        match usize::try_from(v) {
            Ok(i) if i >= min && i < n => Ok(i),
            _ => Err(Error::malformed(
                at,
                format!("an increasing column index in {min}..{n}, got {v}"),
            )),
        }
    };
    if present < n / 2 {
        let mut out = Vec::with_capacity(present.min(c.remaining()));
        let mut min = 0;
        for _ in 0..present {
            let i = read_index(c, min)?;
            out.push(i);
            min = i + 1;
        }
        Ok(out)
    } else {
        let mut missing = Vec::with_capacity(delta.min(c.remaining()));
        let mut min = 0;
        for _ in 0..delta {
            let i = read_index(c, min)?;
            missing.push(i);
            min = i + 1;
        }
        let mut m = missing.iter().peekable();
        Ok((0..n)
            .filter(|i| {
                if m.peek() == Some(&i) {
                    m.next();
                    false
                } else {
                    true
                }
            })
            .collect())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vint::encode_uvint;

    /// Encodes a subset like `Columns.Serializer.serializeSubset`.
    pub(crate) fn encode_subset(present: &[usize], n: usize, out: &mut Vec<u8>) {
        if present.len() == n {
            encode_uvint(0, out);
        } else if n < 64 {
            let mut bitmap = 0u64;
            for i in 0..n {
                if !present.contains(&i) {
                    bitmap |= 1 << i;
                }
            }
            encode_uvint(bitmap, out);
        } else {
            encode_uvint((n - present.len()) as u64, out);
            if present.len() < n / 2 {
                for i in present {
                    encode_uvint(*i as u64, out);
                }
            } else {
                for i in (0..n).filter(|i| !present.contains(i)) {
                    encode_uvint(i as u64, out);
                }
            }
        }
    }

    fn round_trip(present: &[usize], n: usize) {
        let mut b = Vec::new();
        encode_subset(present, n, &mut b);
        let mut c = Cursor::new(&b);
        assert_eq!(read_subset(&mut c, n).unwrap(), present, "n={n}");
        assert!(c.is_empty());
    }

    #[test]
    fn small_bitmaps_exhaustive() {
        for n in 0..=6usize {
            for mask in 0u32..(1 << n) {
                let present: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
                round_trip(&present, n);
            }
        }
        round_trip(&[0, 62], 63);
    }

    #[test]
    fn bitmap_extra_bits_rejected() {
        let mut b = Vec::new();
        encode_uvint(0b1000, &mut b);
        assert!(read_subset(&mut Cursor::new(&b), 3).is_err());
    }

    #[test]
    fn large_subsets_both_branches() {
        for n in [64usize, 65, 70, 130] {
            // Around present == n/2 both branches are exercised.
            for present_count in [1, n / 2 - 1, n / 2, n / 2 + 1, n - 1] {
                let present: Vec<usize> = (0..n).step_by(1).take(present_count).collect();
                round_trip(&present, n);
                let spread: Vec<usize> = (0..n)
                    .rev()
                    .step_by(2)
                    .take(present_count.min(n / 2))
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                round_trip(&spread, n);
            }
            round_trip(&(0..n).collect::<Vec<_>>(), n);
        }
    }

    #[test]
    fn large_subset_bad_indices() {
        // n = 70, 69 missing → 1 present listed, index out of range.
        let mut b = Vec::new();
        encode_uvint(69, &mut b);
        encode_uvint(70, &mut b);
        assert!(read_subset(&mut Cursor::new(&b), 70).is_err());
        // missing list not increasing
        let mut b = Vec::new();
        encode_uvint(2, &mut b);
        encode_uvint(5, &mut b);
        encode_uvint(5, &mut b);
        assert!(read_subset(&mut Cursor::new(&b), 70).is_err());
        // missing count larger than n
        let mut b = Vec::new();
        encode_uvint(71, &mut b);
        assert!(read_subset(&mut Cursor::new(&b), 70).is_err());
        // truncated
        let mut b = Vec::new();
        encode_uvint(3, &mut b);
        encode_uvint(1, &mut b);
        assert!(read_subset(&mut Cursor::new(&b), 70).is_err());
    }
}
