//! Keyspace and table filters: `*` globs over `keyspace` or `keyspace.table`.

use std::sync::LazyLock;

use regex::Regex;

use crate::validate::Validator;

static KEYSPACE_GLOB: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_*]+$").expect("static regex"));
static TABLE_GLOB: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_*]+\.[A-Za-z0-9_*]+$").expect("static regex"));

/// Matches `name` against a glob where `*` stands for any run of characters.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// True when `name` passes an include list (empty = everything) and no exclude entry matches it.
pub fn included(include: &[String], exclude: &[String], name: &str) -> bool {
    (include.is_empty() || include.iter().any(|p| glob_matches(p, name)))
        && !exclude.iter().any(|p| glob_matches(p, name))
}

pub(crate) fn validate_keyspace_globs(v: &mut Validator, key: String, globs: &[String]) {
    for (i, g) in globs.iter().enumerate() {
        v.matches(
            format!("{key}[{i}]"),
            g,
            &KEYSPACE_GLOB,
            "a keyspace name or glob of [A-Za-z0-9_*]",
        );
    }
}

pub(crate) fn validate_table_globs(v: &mut Validator, key: String, globs: &[String]) {
    for (i, g) in globs.iter().enumerate() {
        v.matches(
            format!("{key}[{i}]"),
            g,
            &TABLE_GLOB,
            "`keyspace.table` of [A-Za-z0-9_*]",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_matches("shop.*", "shop.orders"));
        assert!(glob_matches("*.orders", "shop.orders"));
        assert!(glob_matches("s*p.o*s", "shop.orders"));
        assert!(glob_matches("shop.orders", "shop.orders"));
        assert!(!glob_matches("shop.orders", "shop.orders2"));
        assert!(!glob_matches("shop.*x", "shop.orders"));
        assert!(glob_matches("*", ""));
        assert!(!glob_matches("a*a", "a"));
    }

    #[test]
    fn include_and_exclude() {
        let inc = vec!["shop.*".to_owned()];
        let exc = vec!["shop.audit_*".to_owned()];
        assert!(included(&inc, &exc, "shop.orders"));
        assert!(!included(&inc, &exc, "shop.audit_log"));
        assert!(!included(&inc, &exc, "crm.users"));
        assert!(included(&[], &[], "crm.users"));
    }
}
