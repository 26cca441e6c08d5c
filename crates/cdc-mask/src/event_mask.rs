//! Masking one change event: every column (key columns, bound prefixes, cells, collection
//! elements, UDT fields `col.field`) is looked up in the policy and masked before the event is
//! re-encoded. A masked column's type becomes `text` (or, for collections, tuples, UDTs and
//! vectors, the same shape with `text` leaves), so destinations store strings. `passthrough`
//! changes nothing. Fail closed: anything that cannot be masked is an error naming the column.

use std::collections::BTreeMap;

use cdc_model::{
    CellPath, CellValue, ChangeEvent, ColumnKind, CqlType, CqlValue, DeletionScope, KeyColumn,
    TableSchema,
};

use crate::policy::{ColumnRule, Decision, Policy, Strategy};
use crate::strategy::{self, VaultEntry};
use crate::{Error, KeyRing};

/// One column (or UDT field) the masker masked in an event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MaskedField {
    /// `col` or `col.field`.
    pub column: String,
    /// Strategy name (`hash`, `tokenize`, ...).
    pub strategy: &'static str,
    pub key_id: Option<String>,
}

/// A masked event, ready to encode with its (rewritten) schema.
#[derive(Debug, Clone)]
pub struct MaskedEvent {
    pub event: ChangeEvent,
    pub schema: TableSchema,
    /// Columns masked (or passed through by policy), in schema order.
    pub fields: Vec<MaskedField>,
    /// Tokens to store in the vault before the event may be published.
    pub vault_entries: Vec<VaultEntry>,
}

/// Applies one policy with one key ring. Cheap to share behind an `Arc`; swap it to reload.
#[derive(Debug, Clone)]
pub struct Masker {
    policy: Policy,
    keys: KeyRing,
    /// Key id (in `keys`) encrypting vault entries; `None` = no vault.
    vault_key_id: Option<String>,
    vault_key: Option<[u8; 32]>,
}

#[derive(Debug, Clone)]
enum Plan {
    Clear,
    Whole(ColumnRule),
    Fields(BTreeMap<String, ColumnRule>),
}

struct Ctx<'a> {
    masker: &'a Masker,
    table: String,
    vault_entries: Vec<VaultEntry>,
}

impl Masker {
    /// Builds a masker. `vault_key_id` names the AES-256 key (64 hex digits) for vault entries.
    pub fn new(policy: Policy, keys: KeyRing, vault_key_id: Option<String>) -> Result<Self, Error> {
        for id in policy.key_ids() {
            if !keys.contains(id) {
                return Err(Error::MissingKey {
                    file: policy.file.clone(),
                    key: "key_id".into(),
                    key_id: id.to_owned(),
                });
            }
        }
        let vault_key = vault_key_id
            .as_deref()
            .map(|id| keys.aes_key(id))
            .transpose()?;
        Ok(Masker {
            policy,
            keys,
            vault_key_id,
            vault_key,
        })
    }

    /// UDT fields nested inside collections, tuples or other UDT fields cannot be masked one by
    /// one: when the policy classifies one of them (by name), the whole column is masked.
    fn escalate_nested(
        &self,
        ks: &str,
        tb: &str,
        column: &str,
        ty: &CqlType,
        plan: Plan,
        ctx: &Ctx<'_>,
    ) -> Result<Plan, Error> {
        let mut names = Vec::new();
        nested_udt_field_names(ty, true, &mut names);
        for name in names {
            let path = format!("{column}.{name}");
            match self.policy.decide(ks, tb, &path) {
                Decision::Mask(rule) => return Ok(Plan::Whole(rule)),
                Decision::Fail { rule } => {
                    return Err(Error::UnclassifiedMatch {
                        table: ctx.table.clone(),
                        column: path,
                        rule,
                    });
                }
                Decision::Clear => {}
            }
        }
        Ok(plan)
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Decodes, masks and re-encodes one JSON envelope.
    pub fn mask_envelope(&self, bytes: &[u8]) -> Result<(Vec<u8>, MaskedEvent), Error> {
        let (event, schema) = cdc_model::json_codec::decode_event_with_schema(bytes)?;
        let masked = self.mask_event(&event, &schema)?;
        let out = cdc_model::json_codec::encode_event(&masked.event, &masked.schema)?;
        Ok((out, masked))
    }

    /// Masks `event`, whose columns are described by `schema`.
    pub fn mask_event(
        &self,
        event: &ChangeEvent,
        schema: &TableSchema,
    ) -> Result<MaskedEvent, Error> {
        let ks = &schema.keyspace;
        let tb = &schema.table;
        let mut ctx = Ctx {
            masker: self,
            table: format!("{ks}.{tb}"),
            vault_entries: Vec::new(),
        };
        let mut plans: BTreeMap<&str, Plan> = BTreeMap::new();
        let mut new_schema = schema.clone();
        let mut fields = Vec::new();
        for (col, new_col) in schema.columns.iter().zip(new_schema.columns.iter_mut()) {
            let plan = match self.policy.decide(ks, tb, &col.name) {
                Decision::Mask(rule) => Plan::Whole(rule),
                Decision::Fail { rule } => {
                    return Err(Error::UnclassifiedMatch {
                        table: ctx.table.clone(),
                        column: col.name.clone(),
                        rule,
                    });
                }
                Decision::Clear => match &col.cql_type {
                    CqlType::Udt {
                        fields: udt_fields, ..
                    } => {
                        let mut per_field = BTreeMap::new();
                        for (f, _) in udt_fields {
                            let path = format!("{}.{f}", col.name);
                            match self.policy.decide(ks, tb, &path) {
                                Decision::Mask(rule) => {
                                    per_field.insert(f.clone(), rule);
                                }
                                Decision::Fail { rule } => {
                                    return Err(Error::UnclassifiedMatch {
                                        table: ctx.table.clone(),
                                        column: path,
                                        rule,
                                    });
                                }
                                Decision::Clear => {}
                            }
                        }
                        if per_field.is_empty() {
                            Plan::Clear
                        } else {
                            Plan::Fields(per_field)
                        }
                    }
                    _ => Plan::Clear,
                },
            };
            let plan = match plan {
                Plan::Whole(rule) => Plan::Whole(rule),
                other => self.escalate_nested(ks, tb, &col.name, &col.cql_type, other, &ctx)?,
            };
            match &plan {
                Plan::Clear => {}
                Plan::Whole(rule) => {
                    let is_key = matches!(
                        col.kind,
                        ColumnKind::PartitionKey { .. } | ColumnKind::Clustering { .. }
                    );
                    if is_key && !rule.strategy.is_injective() {
                        return Err(ctx.unmaskable(
                            &col.name,
                            format!(
                                "strategy {} is not injective and cannot mask a primary-key column",
                                rule.strategy.name()
                            ),
                        ));
                    }
                    if rule.strategy != Strategy::Passthrough {
                        if matches!(col.cql_type, CqlType::Counter) {
                            return Err(ctx
                                .unmaskable(&col.name, "counter columns cannot be masked".into()));
                        }
                        new_col.cql_type = masked_type(&col.cql_type);
                    }
                    fields.push(MaskedField {
                        column: col.name.clone(),
                        strategy: rule.strategy.name(),
                        key_id: rule.strategy.key_id().map(str::to_owned),
                    });
                }
                Plan::Fields(per_field) => {
                    if let CqlType::Udt {
                        fields: udt_fields, ..
                    } = &mut new_col.cql_type
                    {
                        for (f, ty) in udt_fields.iter_mut() {
                            if let Some(rule) = per_field.get(f.as_str()) {
                                if rule.strategy != Strategy::Passthrough {
                                    *ty = masked_type(ty);
                                }
                                fields.push(MaskedField {
                                    column: format!("{}.{f}", col.name),
                                    strategy: rule.strategy.name(),
                                    key_id: rule.strategy.key_id().map(str::to_owned),
                                });
                            }
                        }
                    }
                }
            }
            plans.insert(col.name.as_str(), plan);
        }
        check_udt_shapes(&new_schema, &ctx.table)?;

        let mut out = event.clone();
        let mask_keys = |keys: &mut Vec<KeyColumn>, ctx: &mut Ctx<'_>| -> Result<(), Error> {
            for k in keys.iter_mut() {
                if let Some(plan) = plans.get(k.name.as_str()) {
                    k.value = ctx.mask_planned(plan, &k.name, &k.value)?;
                }
            }
            Ok(())
        };
        mask_keys(&mut out.partition_key, &mut ctx)?;
        mask_keys(&mut out.clustering_key, &mut ctx)?;
        if let Some(d) = &mut out.deletion
            && let DeletionScope::Range { start, end } = &mut d.scope
        {
            mask_keys(&mut start.prefix, &mut ctx)?;
            mask_keys(&mut end.prefix, &mut ctx)?;
        }
        for cell in &mut out.cells {
            let Some(plan) = plans.get(cell.column.as_str()) else {
                return Err(ctx.unmaskable(
                    &cell.column,
                    "column missing from the event's column list".into(),
                ));
            };
            let col = cell.column.clone();
            let ty = schema.column(&col).map(|c| &c.cql_type);
            match (&mut cell.change, plan) {
                (_, Plan::Clear) => {}
                (CellValue::Tombstone, _) => {}
                (CellValue::Set { value }, plan) => *value = ctx.mask_planned(plan, &col, value)?,
                (CellValue::Counter { .. }, Plan::Whole(rule))
                    if rule.strategy == Strategy::Passthrough => {}
                (CellValue::Counter { .. }, _) => {
                    return Err(ctx.unmaskable(&col, "counter columns cannot be masked".into()));
                }
                (CellValue::Complex { elements, .. }, plan) => {
                    for e in elements.iter_mut() {
                        match (&mut e.path, plan) {
                            (_, Plan::Whole(rule)) if rule.strategy == Strategy::Passthrough => {}
                            (CellPath::UdtField(f), Plan::Fields(per_field)) => {
                                if let (Some(rule), Some(v)) =
                                    (per_field.get(f.as_str()), e.value.as_mut())
                                {
                                    let path = format!("{col}.{f}");
                                    *v = ctx.mask_value(rule, &path, v)?;
                                }
                            }
                            (_, Plan::Fields(_)) => {
                                return Err(ctx.unmaskable(
                                    &col,
                                    "field rules apply to UDT columns only".into(),
                                ));
                            }
                            (CellPath::SetElement(elem), Plan::Whole(rule)) => {
                                *elem = ctx.mask_value(rule, &col, elem)?;
                                // A live set element's value is the empty marker: nothing to mask.
                            }
                            (CellPath::MapKey(k), Plan::Whole(rule)) => {
                                *k = ctx.mask_value(rule, &col, k)?;
                                if let Some(v) = e.value.as_mut() {
                                    *v = ctx.mask_value(rule, &col, v)?;
                                }
                            }
                            (CellPath::ListIndex(_) | CellPath::UdtField(_), Plan::Whole(rule)) => {
                                if let Some(v) = e.value.as_mut() {
                                    *v = ctx.mask_value(rule, &col, v)?;
                                }
                            }
                            (_, Plan::Clear) => {}
                        }
                    }
                    if matches!(ty, Some(CqlType::Set { .. }) | Some(CqlType::Map { .. })) {
                        // Masking may map distinct elements to one (redact): keep the first.
                        let mut seen = Vec::new();
                        elements.retain(|e| match &e.path {
                            CellPath::SetElement(v) | CellPath::MapKey(v) => {
                                if seen.contains(v) {
                                    false
                                } else {
                                    seen.push(v.clone());
                                    true
                                }
                            }
                            _ => true,
                        });
                    }
                }
            }
        }
        Ok(MaskedEvent {
            event: out,
            schema: new_schema,
            fields,
            vault_entries: ctx.vault_entries,
        })
    }
}

impl Ctx<'_> {
    fn unmaskable(&self, column: &str, reason: String) -> Error {
        Error::Unmaskable {
            table: self.table.clone(),
            column: column.to_owned(),
            reason,
        }
    }

    fn mask_planned(
        &mut self,
        plan: &Plan,
        column: &str,
        value: &CqlValue,
    ) -> Result<CqlValue, Error> {
        match plan {
            Plan::Clear => Ok(value.clone()),
            Plan::Whole(rule) => self.mask_value(rule, column, value),
            Plan::Fields(per_field) => match value {
                CqlValue::Udt(fields) => {
                    let mut out = Vec::with_capacity(fields.len());
                    for (name, v) in fields {
                        let v = match (per_field.get(name.as_str()), v) {
                            (Some(rule), Some(v)) => {
                                Some(self.mask_value(rule, &format!("{column}.{name}"), v)?)
                            }
                            (_, v) => v.clone(),
                        };
                        out.push((name.clone(), v));
                    }
                    Ok(CqlValue::Udt(out))
                }
                CqlValue::Empty => Ok(CqlValue::Empty),
                other => Err(self.unmaskable(
                    column,
                    format!("field rules need a UDT value, found {}", other.kind_name()),
                )),
            },
        }
    }

    /// Masks a whole value: leaves of collections, tuples and UDTs one by one.
    fn mask_value(
        &mut self,
        rule: &ColumnRule,
        column: &str,
        value: &CqlValue,
    ) -> Result<CqlValue, Error> {
        use CqlValue as V;
        if rule.strategy == Strategy::Passthrough {
            return Ok(value.clone());
        }
        Ok(match value {
            V::List(items) => V::List(self.mask_all(rule, column, items)?),
            V::Vector(items) => V::Vector(self.mask_all(rule, column, items)?),
            V::Set(items) => {
                let mut out: Vec<CqlValue> = Vec::with_capacity(items.len());
                for v in self.mask_all(rule, column, items)? {
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
                V::Set(out)
            }
            V::Map(entries) => {
                let mut out: Vec<(CqlValue, CqlValue)> = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    let k = self.mask_value(rule, column, k)?;
                    let v = self.mask_value(rule, column, v)?;
                    if !out.iter().any(|(ok, _)| *ok == k) {
                        out.push((k, v));
                    }
                }
                V::Map(out)
            }
            V::Tuple(items) => V::Tuple(
                items
                    .iter()
                    .map(|i| {
                        i.as_ref()
                            .map(|v| self.mask_value(rule, column, v))
                            .transpose()
                    })
                    .collect::<Result<_, _>>()?,
            ),
            V::Udt(fields) => V::Udt(
                fields
                    .iter()
                    .map(|(n, v)| {
                        Ok((
                            n.clone(),
                            v.as_ref()
                                .map(|v| self.mask_value(rule, column, v))
                                .transpose()?,
                        ))
                    })
                    .collect::<Result<_, Error>>()?,
            ),
            V::Counter(_) => {
                return Err(self.unmaskable(column, "counter values cannot be masked".into()));
            }
            scalar => V::Text(self.mask_scalar(rule, column, scalar)?),
        })
    }

    fn mask_all(
        &mut self,
        rule: &ColumnRule,
        column: &str,
        items: &[CqlValue],
    ) -> Result<Vec<CqlValue>, Error> {
        items
            .iter()
            .map(|v| self.mask_value(rule, column, v))
            .collect()
    }

    fn mask_scalar(
        &mut self,
        rule: &ColumnRule,
        column: &str,
        value: &CqlValue,
    ) -> Result<String, Error> {
        let keys = &self.masker.keys;
        let missing = |id: &str| Error::Unmaskable {
            table: self.table.clone(),
            column: column.to_owned(),
            reason: format!("masking key `{id}` is not available"),
        };
        Ok(match &rule.strategy {
            Strategy::Hash { key_id } => {
                let key = keys.get(key_id).ok_or_else(|| missing(key_id))?;
                strategy::hash(key, &strategy::canonical_bytes(value))
            }
            Strategy::Tokenize { key_id } => {
                let key = keys.get(key_id).ok_or_else(|| missing(key_id))?;
                let (Some(aes), Some(aes_id)) = (&self.masker.vault_key, &self.masker.vault_key_id)
                else {
                    return Err(self.unmaskable(column, "tokenize needs a token vault key".into()));
                };
                let bytes = strategy::canonical_bytes(value);
                let (token, nonce) = strategy::token(key, &bytes);
                if !self.vault_entries.iter().any(|e| e.token == token) {
                    self.vault_entries.push(strategy::seal(
                        aes,
                        aes_id,
                        token.clone(),
                        nonce,
                        &bytes,
                    )?);
                }
                token
            }
            Strategy::Redact { placeholder } => placeholder.clone(),
            Strategy::Partial { keep_last } => strategy::partial(value, *keep_last),
            Strategy::Passthrough => {
                return Err(self.unmaskable(column, "passthrough reached a scalar".into()));
            }
        })
    }
}

fn nested_udt_field_names<'t>(ty: &'t CqlType, top: bool, out: &mut Vec<&'t str>) {
    match ty {
        CqlType::List { element, .. }
        | CqlType::Set { element, .. }
        | CqlType::Vector { element, .. } => nested_udt_field_names(element, false, out),
        CqlType::Map { key, value, .. } => {
            nested_udt_field_names(key, false, out);
            nested_udt_field_names(value, false, out);
        }
        CqlType::Tuple { elements } => elements
            .iter()
            .for_each(|e| nested_udt_field_names(e, false, out)),
        CqlType::Udt { fields, .. } => {
            for (name, fty) in fields {
                if !top {
                    out.push(name);
                }
                nested_udt_field_names(fty, false, out);
            }
        }
        _ => {}
    }
}

/// The type of a masked value: `text` leaves in the same shape.
pub fn masked_type(ty: &CqlType) -> CqlType {
    match ty {
        CqlType::List { element, frozen } => CqlType::List {
            element: Box::new(masked_type(element)),
            frozen: *frozen,
        },
        CqlType::Set { element, frozen } => CqlType::Set {
            element: Box::new(masked_type(element)),
            frozen: *frozen,
        },
        CqlType::Map { key, value, frozen } => CqlType::Map {
            key: Box::new(masked_type(key)),
            value: Box::new(masked_type(value)),
            frozen: *frozen,
        },
        CqlType::Tuple { elements } => CqlType::Tuple {
            elements: elements.iter().map(masked_type).collect(),
        },
        CqlType::Udt {
            keyspace,
            name,
            fields,
            frozen,
        } => CqlType::Udt {
            keyspace: keyspace.clone(),
            name: name.clone(),
            fields: fields
                .iter()
                .map(|(n, t)| (n.clone(), masked_type(t)))
                .collect(),
            frozen: *frozen,
        },
        CqlType::Vector { element, dimension } => CqlType::Vector {
            element: Box::new(masked_type(element)),
            dimension: *dimension,
        },
        _ => CqlType::Text,
    }
}

/// The envelope names UDTs once; masking must not give one UDT name two shapes in one event.
fn check_udt_shapes(schema: &TableSchema, table: &str) -> Result<(), Error> {
    fn walk<'t>(
        ty: &'t CqlType,
        column: &str,
        seen: &mut BTreeMap<&'t str, &'t CqlType>,
        table: &str,
    ) -> Result<(), Error> {
        match ty {
            CqlType::List { element, .. }
            | CqlType::Set { element, .. }
            | CqlType::Vector { element, .. } => walk(element, column, seen, table),
            CqlType::Map { key, value, .. } => {
                walk(key, column, seen, table)?;
                walk(value, column, seen, table)
            }
            CqlType::Tuple { elements } => elements
                .iter()
                .try_for_each(|e| walk(e, column, seen, table)),
            CqlType::Udt { name, fields, .. } => {
                if let Some(prev) = seen.get(name.as_str()) {
                    let same = matches!(prev, CqlType::Udt { fields: pf, .. } if pf == fields);
                    if !same {
                        return Err(Error::Unmaskable {
                            table: table.to_owned(),
                            column: column.to_owned(),
                            reason: format!(
                                "UDT `{name}` is masked differently in two columns of one event"
                            ),
                        });
                    }
                }
                seen.insert(name, ty);
                fields
                    .iter()
                    .try_for_each(|(_, t)| walk(t, column, seen, table))
            }
            _ => Ok(()),
        }
    }
    let mut seen = BTreeMap::new();
    for c in &schema.columns {
        walk(&c.cql_type, &c.name, &mut seen, table)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value as Json, json};

    use super::*;
    use crate::PolicyContext;

    /// Column name → CQL type string, from an envelope's `columns` section.
    fn column_types(envelope: &Json) -> BTreeMap<String, String> {
        envelope["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_owned(),
                    c["type"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    const POLICY: &str = r#"
version: 4
hash_key_id: h1
token_key_id: t1
tables:
  shop.customers:
    email: {class: pii, strategy: hash}
    ssn: {class: pii, strategy: hash}
    medical_record_number: {class: phi, strategy: tokenize}
    phone: {class: pii, strategy: partial, keep_last: 4}
    tags: {class: pii, strategy: hash}
    contacts: {class: pii, strategy: hash}
    addr.street: {class: pii, strategy: redact}
    card: {class: pii, strategy: passthrough}
"#;

    fn keys() -> KeyRing {
        let mut k = KeyRing::new();
        k.insert("h1", b"fake-hmac-key".to_vec());
        k.insert("t1", b"fake-token-key".to_vec());
        k.insert("v1", "11".repeat(32).into_bytes());
        k
    }

    fn masker(policy: &str) -> Masker {
        let keys = keys();
        let p = Policy::parse(
            "test-policy.yaml",
            policy,
            PolicyContext {
                keys: &keys,
                vault_configured: true,
            },
        )
        .unwrap();
        Masker::new(p, keys, Some("v1".into())).unwrap()
    }

    fn cell(value: Json) -> Json {
        json!({"writetime": 1_000, "ttl": null, "expires_at": null, "value": value})
    }

    fn envelope(email: &str, ssn: &str, mrn: &str) -> Vec<u8> {
        let j = json!({
            "op": "c", "ts_ms": 1, "correlation_id": "h:1:2:0",
            "source": {"cluster": "c", "host_id": "00000000-0000-0000-0000-000000000001",
                       "keyspace": "shop", "table": "customers",
                       "table_id": "00000000-0000-0000-0000-000000000002", "schema_version": 1,
                       "segment_id": 1, "segment_position": 2, "index": 0},
            "static": false,
            "columns": [
                {"name": "id", "type": "int", "kind": "partition_key"},
                {"name": "email", "type": "text", "kind": "regular"},
                {"name": "ssn", "type": "text", "kind": "regular"},
                {"name": "medical_record_number", "type": "text", "kind": "regular"},
                {"name": "name", "type": "text", "kind": "regular"},
                {"name": "city", "type": "text", "kind": "regular"},
                {"name": "age", "type": "int", "kind": "regular"},
                {"name": "phone", "type": "text", "kind": "regular"},
                {"name": "tags", "type": "set<text>", "kind": "regular"},
                {"name": "contacts", "type": "frozen<map<text, text>>", "kind": "regular"},
                {"name": "addr", "type": "frozen<address>", "kind": "regular"},
                {"name": "card", "type": "blob", "kind": "regular"},
                {"name": "home_email", "type": "text", "kind": "regular"}
            ],
            "udts": {"address": [["street", "text"], ["zip", "int"]]},
            "key": {"id": 1}, "clustering": {},
            "liveness": {"writetime": 1_000, "ttl": null, "expires_at": null},
            "deletion": null,
            "after": {
                "email": cell(json!(email)),
                "ssn": cell(json!(ssn)),
                "medical_record_number": cell(json!(mrn)),
                "name": cell(json!("Fake Person")),
                "city": cell(json!("Testville")),
                "age": cell(json!(42)),
                "phone": cell(json!("555-000-1234")),
                "tags": {"writetime": 1_000, "ttl": null, "expires_at": null, "deletion": null,
                         "elements": [{"path": "fake.tag@example.test", "value": {"$empty": true},
                                       "writetime": 1_000, "ttl": null, "expires_at": null}]},
                "contacts": cell(json!([["home", "fake.home@example.test"]])),
                "addr": cell(json!({"street": "1 Fake Street", "zip": 12345})),
                "card": cell(json!("AAEC")),
                "home_email": cell(json!("fake.other@example.test"))
            }
        });
        serde_json::to_vec(&j).unwrap()
    }

    #[test]
    fn masks_classified_columns_and_keeps_the_rest_readable() {
        let m = masker(POLICY);
        let raw = envelope("fake.user@example.test", "000-00-0000", "MRN-000001");
        let (bytes, masked) = m.mask_envelope(&raw).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        for pii in [
            "fake.user@example.test",
            "000-00-0000",
            "MRN-000001",
            "fake.tag@example.test",
            "fake.home@example.test",
            "1 Fake Street",
            "555-000-1234",
            "fake.other@example.test",
        ] {
            assert!(!text.contains(pii), "{pii} leaked");
        }
        let j: Json = serde_json::from_slice(&bytes).unwrap();
        let after = &j["after"];
        assert!(
            after["email"]["value"]
                .as_str()
                .unwrap()
                .starts_with("hash_")
        );
        assert!(after["ssn"]["value"].as_str().unwrap().starts_with("hash_"));
        assert!(
            after["medical_record_number"]["value"]
                .as_str()
                .unwrap()
                .starts_with("tok_")
        );
        assert_eq!(after["name"]["value"], "Fake Person");
        assert_eq!(after["city"]["value"], "Testville");
        assert_eq!(after["age"]["value"], 42);
        assert_eq!(after["phone"]["value"], "********1234");
        assert_eq!(after["addr"]["value"]["street"], "[REDACTED]");
        assert_eq!(after["addr"]["value"]["zip"], 12345);
        assert_eq!(after["card"]["value"], "AAEC");
        // Unlisted but matching the built-in email rule: masked (on_unclassified_match: mask).
        assert!(
            after["home_email"]["value"]
                .as_str()
                .unwrap()
                .starts_with("hash_")
        );
        // Types in the envelope follow the masking.
        let types = column_types(&j);
        assert_eq!(types["age"], "int");
        assert_eq!(types["email"], "text");
        assert_eq!(types["card"], "blob");
        assert_eq!(types["contacts"], "frozen<map<text, text>>");
        assert_eq!(
            j["udts"]["address"],
            json!([["street", "text"], ["zip", "int"]])
        );
        // The masked envelope decodes again.
        let back = cdc_model::json_codec::decode_event(&bytes).unwrap();
        assert_eq!(back.partition_key, masked.event.partition_key);
        assert_eq!(masked.vault_entries.len(), 1);
        assert_eq!(masked.vault_entries[0].key_id, "v1");
        let strategies: BTreeMap<&str, &str> = masked
            .fields
            .iter()
            .map(|f| (f.column.as_str(), f.strategy))
            .collect();
        assert_eq!(strategies["medical_record_number"], "tokenize");
        assert_eq!(strategies["card"], "passthrough");
        assert_eq!(strategies["addr.street"], "redact");
        assert!(!strategies.contains_key("name"));
        // Deterministic.
        assert_eq!(m.mask_envelope(&raw).unwrap().0, bytes);
    }

    #[test]
    fn tokens_decrypt_with_the_vault_key() {
        let m = masker(POLICY);
        let (_, masked) = m
            .mask_envelope(&envelope(
                "fake.user@example.test",
                "000-00-0000",
                "MRN-000002",
            ))
            .unwrap();
        let key = keys().aes_key("v1").unwrap();
        assert_eq!(
            strategy::open(&key, &masked.vault_entries[0]).unwrap(),
            b"MRN-000002"
        );
    }

    #[test]
    fn on_unclassified_match_fail_names_the_column_not_the_value() {
        let m = masker(&format!("{POLICY}on_unclassified_match: fail\n"));
        let e = m
            .mask_envelope(&envelope(
                "fake.user@example.test",
                "000-00-0000",
                "MRN-000003",
            ))
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("home_email"), "{msg}");
        assert!(!msg.contains("fake.other@example.test"));
        assert_eq!(e.class(), ErrorClass::Poison);
    }

    #[test]
    fn non_injective_strategy_on_a_key_column_fails_closed() {
        let m = masker(
            "version: 1\nhash_key_id: h1\ntables:\n  shop.customers:\n    id: {class: pii, strategy: redact}\n",
        );
        let e = m
            .mask_envelope(&envelope(
                "fake.user@example.test",
                "000-00-0000",
                "MRN-000004",
            ))
            .unwrap_err();
        assert!(e.to_string().contains("column `id`"), "{e}");
    }

    #[test]
    fn masked_key_columns_change_the_kafka_key() {
        let m = masker(
            "version: 1\nhash_key_id: h1\ntables:\n  shop.customers:\n    id: {class: pii, strategy: hash}\n",
        );
        let (_, masked) = m
            .mask_envelope(&envelope(
                "fake.user@example.test",
                "000-00-0000",
                "MRN-000005",
            ))
            .unwrap();
        assert!(masked.event.key_string().contains("hash_"));
        assert!(!masked.event.key_string().contains("[1]"));
    }

    #[test]
    fn collection_elements_tuples_and_udt_fields_are_masked_one_by_one() {
        let m = masker(
            "version: 1\nhash_key_id: h1\ndefault_rules: []\ntables:\n  shop.customers:\n    emails: {class: pii, strategy: hash}\n    prefs: {class: pii, strategy: hash}\n    pair: {class: pii, strategy: hash}\n    home.street: {class: pii, strategy: hash}\n",
        );
        let elem = |path: Json, value: Json| json!({"path": path, "value": value, "writetime": 1_000, "ttl": null, "expires_at": null});
        let complex = |elements: Vec<Json>| json!({"writetime": 1_000, "ttl": null, "expires_at": null, "deletion": null, "elements": elements});
        let raw = json!({
            "op": "u", "ts_ms": 1, "correlation_id": "h:1:3:0",
            "source": {"cluster": "c", "host_id": "00000000-0000-0000-0000-000000000001",
                       "keyspace": "shop", "table": "customers",
                       "table_id": "00000000-0000-0000-0000-000000000002", "schema_version": 1,
                       "segment_id": 1, "segment_position": 3, "index": 0},
            "static": false,
            "columns": [
                {"name": "id", "type": "int", "kind": "partition_key"},
                {"name": "emails", "type": "list<text>", "kind": "regular"},
                {"name": "prefs", "type": "map<text, text>", "kind": "regular"},
                {"name": "pair", "type": "frozen<tuple<text, int>>", "kind": "regular"},
                {"name": "home", "type": "address", "kind": "regular"}
            ],
            "udts": {"address": [["street", "text"], ["zip", "int"]]},
            "key": {"id": 7}, "clustering": {}, "liveness": null, "deletion": null,
            "after": {
                "emails": complex(vec![elem(json!("6ba7b810-9dad-11d1-80b4-00c04fd430c8"), json!("fake.a@example.test"))]),
                "prefs": complex(vec![elem(json!("fake.key@example.test"), json!("fake.val@example.test"))]),
                "pair": cell(json!(["fake.t@example.test", 5])),
                "home": complex(vec![elem(json!("street"), json!("2 Fake Road")), elem(json!("zip"), json!(9))])
            }
        });
        let (bytes, masked) = m.mask_envelope(&serde_json::to_vec(&raw).unwrap()).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        for v in [
            "fake.a@example.test",
            "fake.key@example.test",
            "fake.val@example.test",
            "fake.t@example.test",
            "2 Fake Road",
        ] {
            assert!(!text.contains(v), "{v} leaked");
        }
        let j: Json = serde_json::from_slice(&bytes).unwrap();
        let types = column_types(&j);
        assert_eq!(types["emails"], "list<text>");
        assert_eq!(types["prefs"], "map<text, text>");
        assert_eq!(types["pair"], "frozen<tuple<text, text>>");
        assert_eq!(
            j["udts"]["address"],
            json!([["street", "text"], ["zip", "int"]])
        );
        assert_eq!(j["after"]["home"]["elements"][1]["value"], 9);
        assert!(
            j["after"]["pair"]["value"][1]
                .as_str()
                .unwrap()
                .starts_with("hash_")
        );
        assert!(
            j["after"]["emails"]["elements"][0]["path"]
                .as_str()
                .unwrap()
                .starts_with("6ba7b810")
        );
        let cols: Vec<&str> = masked.fields.iter().map(|f| f.column.as_str()).collect();
        assert_eq!(cols, vec!["emails", "prefs", "pair", "home.street"]);
        cdc_model::json_codec::decode_event(&bytes).unwrap();
    }

    #[test]
    fn pii_named_fields_of_udts_inside_collections_mask_the_whole_column() {
        let m = masker("version: 1\nhash_key_id: h1\n");
        let raw = json!({
            "op": "c", "ts_ms": 1, "correlation_id": "h:1:4:0",
            "source": {"cluster": "c", "host_id": "00000000-0000-0000-0000-000000000001",
                       "keyspace": "shop", "table": "customers",
                       "table_id": "00000000-0000-0000-0000-000000000002", "schema_version": 1,
                       "segment_id": 1, "segment_position": 4, "index": 0},
            "static": false,
            "columns": [
                {"name": "id", "type": "int", "kind": "partition_key"},
                {"name": "contacts", "type": "frozen<list<frozen<contact>>>", "kind": "regular"}
            ],
            "udts": {"contact": [["label", "text"], ["email", "text"]]},
            "key": {"id": 8}, "clustering": {}, "liveness": null, "deletion": null,
            "after": {"contacts": cell(json!([{"label": "work", "email": "fake.c@example.test"}]))}
        });
        let (bytes, masked) = m.mask_envelope(&serde_json::to_vec(&raw).unwrap()).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(!text.contains("fake.c@example.test"));
        assert_eq!(masked.fields[0].column, "contacts");
    }

    use cdc_model::ErrorClass;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn strategies_are_deterministic_and_never_echo_the_input(input in "[ -~]{6,40}") {
            let key = b"fake-prop-key";
            let v = CqlValue::Text(input.clone());
            let bytes = strategy::canonical_bytes(&v);
            let h = strategy::hash(key, &bytes);
            prop_assert_eq!(&h, &strategy::hash(key, &bytes));
            prop_assert!(!h.contains(&input));
            let (t, _) = strategy::token(key, &bytes);
            prop_assert_eq!(&t, &strategy::token(key, &bytes).0);
            prop_assert!(!t.contains(&input));
            let p = strategy::partial(&v, 4);
            prop_assert_eq!(p.chars().count(), input.chars().count().max(1));
            if !input.starts_with('*') {
                prop_assert!(!p.contains(&input));
            }
        }
    }

    #[test]
    fn no_collisions_and_no_echo_over_a_large_sample() {
        let key = b"fake-sample-key";
        let mut hashes = std::collections::HashSet::new();
        let mut tokens = std::collections::HashSet::new();
        for i in 0..50_000u32 {
            let input = format!("fake.user{i}@example.test");
            let bytes = input.as_bytes();
            let h = strategy::hash(key, bytes);
            let (t, _) = strategy::token(key, bytes);
            assert!(!h.contains(&input) && !t.contains(&input));
            assert!(hashes.insert(h), "hash collision at {i}");
            assert!(tokens.insert(t), "token collision at {i}");
        }
    }
}
