//! CQL types as a typed tree (never matched as strings elsewhere).

use serde::{Deserialize, Serialize};

/// A CQL data type.
///
/// `frozen` is carried on the types that can be multi-cell (list, set, map, UDT); a non-frozen one
/// is stored by Cassandra as a complex (multi-cell) column. Elements nested inside a collection are
/// always frozen.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CqlType {
    Ascii,
    Bigint,
    Blob,
    Boolean,
    Counter,
    Date,
    Decimal,
    Double,
    Duration,
    Float,
    Inet,
    Int,
    Smallint,
    Text,
    Time,
    Timestamp,
    Timeuuid,
    Tinyint,
    Uuid,
    Varint,
    List {
        element: Box<CqlType>,
        frozen: bool,
    },
    Set {
        element: Box<CqlType>,
        frozen: bool,
    },
    Map {
        key: Box<CqlType>,
        value: Box<CqlType>,
        frozen: bool,
    },
    Tuple {
        elements: Vec<CqlType>,
    },
    /// A user-defined type; field order is the declaration order.
    Udt {
        keyspace: String,
        name: String,
        fields: Vec<(String, CqlType)>,
        frozen: bool,
    },
    /// `vector<element, dimension>` (Cassandra 5.0).
    Vector {
        element: Box<CqlType>,
        dimension: u32,
    },
    /// A custom marshal class Cassandra names by its Java class; carried as raw bytes.
    Custom {
        class: String,
    },
}

/// Why a CQL type string could not be parsed; `position` is the byte offset in `input`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse CQL type {input:?} at byte {position}: {reason}")]
pub struct CqlTypeParseError {
    pub input: String,
    pub position: usize,
    pub reason: String,
}

impl CqlType {
    /// True for a multi-cell (complex) column type: a non-frozen list, set, map or UDT.
    pub fn is_multi_cell(&self) -> bool {
        match self {
            CqlType::List { frozen, .. }
            | CqlType::Set { frozen, .. }
            | CqlType::Map { frozen, .. }
            | CqlType::Udt { frozen, .. } => !frozen,
            _ => false,
        }
    }

    /// The serialized width when the type is fixed-width on disk (`AbstractType.valueLengthIfFixed`),
    /// `None` when values are length-prefixed. See CASSANDRA_COMMITLOG.md §10.1.
    pub fn fixed_value_length(&self) -> Option<usize> {
        match self {
            CqlType::Boolean => Some(1),
            CqlType::Int | CqlType::Float => Some(4),
            CqlType::Bigint | CqlType::Double | CqlType::Timestamp => Some(8),
            CqlType::Uuid | CqlType::Timeuuid => Some(16),
            CqlType::Vector { element, dimension } => element
                .fixed_value_length()
                .and_then(|w| w.checked_mul(*dimension as usize)),
            _ => None,
        }
    }

    /// The same type with `frozen` set, as it appears nested inside collections.
    pub fn frozen(self) -> CqlType {
        match self {
            CqlType::List { element, .. } => CqlType::List {
                element,
                frozen: true,
            },
            CqlType::Set { element, .. } => CqlType::Set {
                element,
                frozen: true,
            },
            CqlType::Map { key, value, .. } => CqlType::Map {
                key,
                value,
                frozen: true,
            },
            CqlType::Udt {
                keyspace,
                name,
                fields,
                ..
            } => CqlType::Udt {
                keyspace,
                name,
                fields,
                frozen: true,
            },
            other => other,
        }
    }
}

/// A UDT's definition as the parser needs it: its keyspace and its fields in declaration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdtDefinition {
    pub keyspace: String,
    pub name: String,
    pub fields: Vec<(String, CqlType)>,
}

/// Looks up a user-defined type by its (unquoted, case-exact) name while parsing a type string.
///
/// Implemented for closures `Fn(&str) -> Option<UdtDefinition>` so callers (the schema loader,
/// the JSON decoder) can resolve names from whatever they hold.
pub trait UdtResolver {
    fn resolve(&self, name: &str) -> Option<UdtDefinition>;
}

impl<F> UdtResolver for F
where
    F: Fn(&str) -> Option<UdtDefinition>,
{
    fn resolve(&self, name: &str) -> Option<UdtDefinition> {
        self(name)
    }
}

/// A resolver that knows no UDT (type strings from `dropped_columns`, where UDTs are tuples).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoUdts;

impl UdtResolver for NoUdts {
    fn resolve(&self, _name: &str) -> Option<UdtDefinition> {
        None
    }
}

/// Nesting deeper than this is rejected: type strings come from outside and recursion is bounded.
const MAX_TYPE_DEPTH: usize = 64;

impl CqlType {
    /// Parses a type string as stored in `system_schema.columns.type`, `system_schema.types.field_types`
    /// or `system_schema.dropped_columns.type`, resolving UDT names with `resolver`.
    ///
    /// Accepted: every native type name (case-insensitive; `varchar` is `text`), `list<T>`,
    /// `set<T>`, `map<K, V>` (non-frozen unless wrapped in `frozen<…>`), `tuple<…>`,
    /// `vector<T, n>`, `frozen<…>`, quoted custom marshal classes `'org.apache…X'` and UDT names,
    /// unquoted (folded to lower case, as CQL does) or double-quoted (case-sensitive, `""` escapes
    /// a quote). Everything nested inside a collection, tuple, vector or UDT is frozen.
    pub fn parse_with(
        input: &str,
        resolver: &dyn UdtResolver,
    ) -> Result<CqlType, CqlTypeParseError> {
        let mut parser = TypeParser {
            input,
            pos: 0,
            resolver,
        };
        let ty = parser.parse_type(0)?;
        parser.skip_ws();
        if parser.pos != input.len() {
            return Err(parser.error("unexpected trailing input"));
        }
        Ok(ty)
    }

    /// [`CqlType::parse_with`] with no UDTs known: a UDT name is an error.
    pub fn parse(input: &str) -> Result<CqlType, CqlTypeParseError> {
        Self::parse_with(input, &NoUdts)
    }

    /// True for the list, set, map and UDT types, the ones `frozen` applies to.
    fn can_be_frozen(&self) -> bool {
        matches!(
            self,
            CqlType::List { .. } | CqlType::Set { .. } | CqlType::Map { .. } | CqlType::Udt { .. }
        )
    }

    /// The CQL name of a native (non-parameterised) type.
    fn native_name(&self) -> Option<&'static str> {
        Some(match self {
            CqlType::Ascii => "ascii",
            CqlType::Bigint => "bigint",
            CqlType::Blob => "blob",
            CqlType::Boolean => "boolean",
            CqlType::Counter => "counter",
            CqlType::Date => "date",
            CqlType::Decimal => "decimal",
            CqlType::Double => "double",
            CqlType::Duration => "duration",
            CqlType::Float => "float",
            CqlType::Inet => "inet",
            CqlType::Int => "int",
            CqlType::Smallint => "smallint",
            CqlType::Text => "text",
            CqlType::Time => "time",
            CqlType::Timestamp => "timestamp",
            CqlType::Timeuuid => "timeuuid",
            CqlType::Tinyint => "tinyint",
            CqlType::Uuid => "uuid",
            CqlType::Varint => "varint",
            _ => return None,
        })
    }

    fn from_native_name(name: &str) -> Option<CqlType> {
        Some(match name.to_ascii_lowercase().as_str() {
            "ascii" => CqlType::Ascii,
            "bigint" => CqlType::Bigint,
            "blob" => CqlType::Blob,
            "boolean" => CqlType::Boolean,
            "counter" => CqlType::Counter,
            "date" => CqlType::Date,
            "decimal" => CqlType::Decimal,
            "double" => CqlType::Double,
            "duration" => CqlType::Duration,
            "float" => CqlType::Float,
            "inet" => CqlType::Inet,
            "int" => CqlType::Int,
            "smallint" => CqlType::Smallint,
            "text" | "varchar" => CqlType::Text,
            "time" => CqlType::Time,
            "timestamp" => CqlType::Timestamp,
            "timeuuid" => CqlType::Timeuuid,
            "tinyint" => CqlType::Tinyint,
            "uuid" => CqlType::Uuid,
            "varint" => CqlType::Varint,
            _ => return None,
        })
    }

    /// A short name of the type's kind (`map`, `int`, `udt`…), for error messages.
    pub fn kind_name(&self) -> &'static str {
        if let Some(name) = self.native_name() {
            return name;
        }
        match self {
            CqlType::List { .. } => "list",
            CqlType::Set { .. } => "set",
            CqlType::Map { .. } => "map",
            CqlType::Tuple { .. } => "tuple",
            CqlType::Udt { .. } => "udt",
            CqlType::Vector { .. } => "vector",
            _ => "custom",
        }
    }
}

impl std::str::FromStr for CqlType {
    type Err = CqlTypeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CqlType::parse(s)
    }
}

/// Writes an identifier the way Cassandra's `ColumnIdentifier.maybeQuote` does: bare when it is
/// all lower-case `[a-z][a-z0-9_]*` and not a type keyword, otherwise double-quoted.
pub(crate) fn write_identifier(f: &mut impl std::fmt::Write, name: &str) -> std::fmt::Result {
    let mut chars = name.chars();
    let bare = matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && CqlType::from_native_name(name).is_none()
        && !matches!(name, "frozen" | "list" | "set" | "map" | "tuple" | "vector");
    if bare {
        f.write_str(name)
    } else {
        f.write_char('"')?;
        f.write_str(&name.replace('"', "\"\""))?;
        f.write_char('"')
    }
}

impl std::fmt::Display for CqlType {
    /// The CQL form as `system_schema` stores it: nested multi-cell-capable types and tuples are
    /// written `frozen<…>`, top-level non-frozen collections and UDTs bare.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn inner(f: &mut std::fmt::Formatter<'_>, ty: &CqlType) -> std::fmt::Result {
            let frozen = match ty {
                CqlType::List { frozen, .. }
                | CqlType::Set { frozen, .. }
                | CqlType::Map { frozen, .. }
                | CqlType::Udt { frozen, .. } => *frozen,
                CqlType::Tuple { .. } => true,
                _ => false,
            };
            if frozen {
                f.write_str("frozen<")?;
            }
            match ty {
                CqlType::List { element, .. } => write!(f, "list<{element}>")?,
                CqlType::Set { element, .. } => write!(f, "set<{element}>")?,
                CqlType::Map { key, value, .. } => write!(f, "map<{key}, {value}>")?,
                CqlType::Tuple { elements } => {
                    f.write_str("tuple<")?;
                    for (i, e) in elements.iter().enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        write!(f, "{e}")?;
                    }
                    f.write_str(">")?;
                }
                CqlType::Udt { name, .. } => write_identifier(f, name)?,
                CqlType::Vector { element, dimension } => {
                    write!(f, "vector<{element}, {dimension}>")?
                }
                CqlType::Custom { class } => {
                    write!(f, "'{}'", class.replace('\'', "''"))?;
                }
                native => {
                    if let Some(name) = native.native_name() {
                        f.write_str(name)?;
                    }
                }
            }
            if frozen {
                f.write_str(">")?;
            }
            Ok(())
        }
        inner(f, self)
    }
}

struct TypeParser<'a> {
    input: &'a str,
    pos: usize,
    resolver: &'a dyn UdtResolver,
}

impl TypeParser<'_> {
    fn error(&self, reason: impl Into<String>) -> CqlTypeParseError {
        CqlTypeParseError {
            input: self.input.to_owned(),
            position: self.pos,
            reason: reason.into(),
        }
    }

    fn rest(&self) -> &str {
        self.input.get(self.pos..).unwrap_or("")
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn eat(&mut self, c: char) -> Result<(), CqlTypeParseError> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            Ok(())
        } else {
            Err(self.error(format!("expected '{c}'")))
        }
    }

    /// A quoted string with the quote doubled as its escape; the opening quote is next.
    fn quoted(&mut self, quote: char) -> Result<String, CqlTypeParseError> {
        self.pos += quote.len_utf8();
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error(format!("unterminated {quote}-quoted name")));
            };
            self.pos += c.len_utf8();
            if c == quote {
                if self.peek() == Some(quote) {
                    self.pos += quote.len_utf8();
                    out.push(quote);
                } else {
                    return Ok(out);
                }
            } else {
                out.push(c);
            }
        }
    }

    fn identifier(&mut self) -> &str {
        let start = self.pos;
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        self.pos += len;
        self.input.get(start..self.pos).unwrap_or("")
    }

    fn parse_type(&mut self, depth: usize) -> Result<CqlType, CqlTypeParseError> {
        if depth > MAX_TYPE_DEPTH {
            return Err(self.error("type nesting too deep"));
        }
        self.skip_ws();
        match self.peek() {
            None => return Err(self.error("expected a type")),
            Some('\'') => {
                let class = self.quoted('\'')?;
                return Ok(CqlType::Custom { class });
            }
            Some('"') => {
                let start = self.pos;
                let name = self.quoted('"')?;
                return self.udt(name, start);
            }
            Some(_) => {}
        }
        let start = self.pos;
        let word = self.identifier().to_owned();
        if word.is_empty() {
            return Err(self.error("expected a type name"));
        }
        if let Some(native) = CqlType::from_native_name(&word) {
            return Ok(native);
        }
        let nested = depth + 1;
        match word.to_ascii_lowercase().as_str() {
            "frozen" => {
                self.eat('<')?;
                let inner = self.parse_type(nested)?;
                self.eat('>')?;
                if !(inner.can_be_frozen() || matches!(inner, CqlType::Tuple { .. })) {
                    self.pos = start;
                    return Err(self.error("frozen<> applies to collections, tuples and UDTs only"));
                }
                Ok(inner.frozen())
            }
            "list" => {
                self.eat('<')?;
                let element = Box::new(self.parse_type(nested)?.frozen());
                self.eat('>')?;
                Ok(CqlType::List {
                    element,
                    frozen: false,
                })
            }
            "set" => {
                self.eat('<')?;
                let element = Box::new(self.parse_type(nested)?.frozen());
                self.eat('>')?;
                Ok(CqlType::Set {
                    element,
                    frozen: false,
                })
            }
            "map" => {
                self.eat('<')?;
                let key = Box::new(self.parse_type(nested)?.frozen());
                self.eat(',')?;
                let value = Box::new(self.parse_type(nested)?.frozen());
                self.eat('>')?;
                Ok(CqlType::Map {
                    key,
                    value,
                    frozen: false,
                })
            }
            "tuple" => {
                self.eat('<')?;
                let mut elements = vec![self.parse_type(nested)?.frozen()];
                loop {
                    self.skip_ws();
                    if self.peek() == Some(',') {
                        self.pos += 1;
                        elements.push(self.parse_type(nested)?.frozen());
                    } else {
                        break;
                    }
                }
                self.eat('>')?;
                Ok(CqlType::Tuple { elements })
            }
            "vector" => {
                self.eat('<')?;
                let element = Box::new(self.parse_type(nested)?.frozen());
                self.eat(',')?;
                self.skip_ws();
                let digits_at = self.pos;
                let digits = self.identifier().to_owned();
                let dimension: u32 = match digits.parse() {
                    Ok(d) if d > 0 => d,
                    _ => {
                        self.pos = digits_at;
                        return Err(self.error("vector dimension must be a positive integer"));
                    }
                };
                self.eat('>')?;
                Ok(CqlType::Vector { element, dimension })
            }
            _ => self.udt(word.to_ascii_lowercase(), start),
        }
    }

    /// A UDT named `name`, which started at byte `start`; non-frozen until a `frozen<>` wraps it.
    fn udt(&mut self, name: String, start: usize) -> Result<CqlType, CqlTypeParseError> {
        match self.resolver.resolve(&name) {
            Some(def) => Ok(CqlType::Udt {
                keyspace: def.keyspace,
                name: def.name,
                fields: def
                    .fields
                    .into_iter()
                    .map(|(n, t)| (n, t.frozen()))
                    .collect(),
                frozen: false,
            }),
            None => {
                self.pos = start;
                Err(self.error(format!("unknown type or user-defined type {name:?}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::test_strategies::{collect_udts, column_type, name_udts};

    fn address() -> UdtDefinition {
        UdtDefinition {
            keyspace: "shop".into(),
            name: "Address".into(),
            fields: vec![
                ("street".into(), CqlType::Text),
                (
                    "tags".into(),
                    CqlType::Set {
                        element: Box::new(CqlType::Text),
                        frozen: false,
                    },
                ),
            ],
        }
    }

    fn resolver(name: &str) -> Option<UdtDefinition> {
        (name == "Address").then(address)
    }

    #[test]
    fn parses_system_schema_type_strings() -> Result<(), CqlTypeParseError> {
        assert_eq!(CqlType::parse("text")?, CqlType::Text);
        assert_eq!(CqlType::parse("varchar")?, CqlType::Text);
        assert_eq!(CqlType::parse(" BigInt ")?, CqlType::Bigint);
        assert_eq!(
            CqlType::parse("frozen<map<text, frozen<list<int>>>>")?,
            CqlType::Map {
                key: Box::new(CqlType::Text),
                value: Box::new(CqlType::List {
                    element: Box::new(CqlType::Int),
                    frozen: true
                }),
                frozen: true
            }
        );
        let m = CqlType::parse("map<text, int>")?;
        assert!(m.is_multi_cell());
        // Nested collections are frozen even when the string does not say so.
        assert_eq!(
            CqlType::parse("list<set<int>>")?,
            CqlType::List {
                element: Box::new(CqlType::Set {
                    element: Box::new(CqlType::Int),
                    frozen: true
                }),
                frozen: false
            }
        );
        assert_eq!(
            CqlType::parse("frozen<tuple<int, text>>")?,
            CqlType::parse("tuple<int,text>")?
        );
        assert_eq!(
            CqlType::parse("vector<float, 3>")?,
            CqlType::Vector {
                element: Box::new(CqlType::Float),
                dimension: 3
            }
        );
        assert_eq!(
            CqlType::parse("'org.apache.cassandra.db.marshal.LexicalUUIDType'")?,
            CqlType::Custom {
                class: "org.apache.cassandra.db.marshal.LexicalUUIDType".into()
            }
        );
        Ok(())
    }

    #[test]
    fn resolves_quoted_udt_names_and_freezes_fields() -> Result<(), CqlTypeParseError> {
        let ty = CqlType::parse_with("\"Address\"", &resolver)?;
        assert!(ty.is_multi_cell());
        let CqlType::Udt {
            keyspace, fields, ..
        } = &ty
        else {
            panic!("not a UDT: {ty:?}");
        };
        assert_eq!(keyspace, "shop");
        assert!(!fields[1].1.is_multi_cell(), "UDT fields are frozen");
        assert_eq!(ty.to_string(), "\"Address\"");
        let frozen = CqlType::parse_with("list<frozen<\"Address\">>", &resolver)?;
        assert_eq!(frozen.to_string(), "list<frozen<\"Address\">>");
        // Unquoted names fold to lower case, so `Address` looks up `address`.
        assert!(CqlType::parse_with("Address", &resolver).is_err());
        Ok(())
    }

    #[test]
    fn reports_errors_with_position() {
        for (input, position) in [
            ("", 0),
            ("list<int", 8),
            ("map<int>", 7),
            ("vector<float, 0>", 14),
            ("frozen<int>", 0),
            ("int int", 4),
            ("'unterminated", 13),
            ("nosuchtype", 0),
        ] {
            let err = CqlType::parse(input).err();
            assert_eq!(
                err.as_ref().map(|e| e.position),
                Some(position),
                "{input:?}: {err:?}"
            );
        }
        let deep = format!("{}int{}", "list<".repeat(100), ">".repeat(100));
        assert!(CqlType::parse(&deep).is_err());
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(ty in column_type()) {
            let mut ty = ty;
            name_udts(&mut ty, &mut 0);
            let mut udts = HashMap::new();
            collect_udts(&ty, &mut udts);
            let resolve = |name: &str| udts.get(name).cloned();
            let text = ty.to_string();
            let parsed = CqlType::parse_with(&text, &resolve);
            prop_assert_eq!(parsed.as_ref(), Ok(&ty), "{}", text);
        }

        #[test]
        fn parse_never_panics(s in "[a-z<>, '\"0-9]{0,40}") {
            let _ = CqlType::parse(&s);
        }
    }
}
