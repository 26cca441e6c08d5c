//! Message headers as plain `(name, bytes)` pairs. Trace context, policy version and schema version
//! travel in headers; the rest of the workspace never touches librdkafka's header types.

use rdkafka::message::{Header, Headers, OwnedHeaders};

/// One header: name and value. A Kafka header with a null value reads back as an empty value.
pub type HeaderPair = (String, Vec<u8>);

/// Builds librdkafka headers, keeping order and duplicates.
pub fn to_owned_headers(headers: &[HeaderPair]) -> OwnedHeaders {
    headers.iter().fold(
        OwnedHeaders::new_with_capacity(headers.len()),
        |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v),
            })
        },
    )
}

/// Reads librdkafka headers back into pairs, keeping order and duplicates.
pub fn from_headers<H: Headers>(headers: &H) -> Vec<HeaderPair> {
    headers
        .iter()
        .map(|h| {
            (
                h.key.to_owned(),
                h.value.map(<[u8]>::to_vec).unwrap_or_default(),
            )
        })
        .collect()
}

/// The value of the first header named `name`.
pub fn header_value<'a>(headers: &'a [HeaderPair], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_order_duplicates_and_binary_values() {
        let pairs: Vec<HeaderPair> = vec![
            ("traceparent".into(), b"00-abc-def-01".to_vec()),
            ("policy_version".into(), 7u32.to_be_bytes().to_vec()),
            ("dup".into(), vec![0, 255, 1]),
            ("dup".into(), vec![]),
        ];
        let owned = to_owned_headers(&pairs);
        assert_eq!(owned.count(), 4);
        assert_eq!(from_headers(&owned), pairs);
        assert_eq!(header_value(&pairs, "dup"), Some(&[0u8, 255, 1][..]));
        assert_eq!(header_value(&pairs, "missing"), None);
    }

    #[test]
    fn null_header_value_reads_as_empty() {
        let owned = OwnedHeaders::new().insert(Header::<&[u8]> {
            key: "tombstone",
            value: None,
        });
        assert_eq!(from_headers(&owned), vec![("tombstone".to_owned(), vec![])]);
    }

    #[test]
    fn empty_headers() {
        assert_eq!(to_owned_headers(&[]).count(), 0);
    }
}
