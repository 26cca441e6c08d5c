//! `docs/configuration.md` is generated from `config/pipeline.example.yaml` (whose own test proves it
//! documents every field of the config structs, with a comment above every key). This test renders the
//! reference and fails when the committed page differs; regenerate it with
//! `make docs-config` (`CDC_UPDATE_DOCS=1 cargo test -p cdc-config --test docs`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One key of the example file: dotted path, value as written (lists joined), comment above it.
struct Entry {
    path: String,
    depth: usize,
    value: String,
    doc: Vec<String>,
}

fn parse(text: &str) -> (Vec<String>, Vec<Entry>) {
    let mut intro = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut seen_key = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() {
            if !seen_key && !pending.is_empty() {
                intro.append(&mut pending);
                intro.push(String::new());
            }
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            pending.push(comment.strip_prefix(' ').unwrap_or(comment).to_owned());
            continue;
        }
        if let Some(item) = trimmed.strip_prefix("- ") {
            if let Some(last) = entries.last_mut() {
                if !last.value.is_empty() {
                    last.value.push_str(", ");
                }
                last.value.push_str(item);
            }
            continue;
        }
        let (key, value) = trimmed.split_once(':').expect("key: value line");
        seen_key = true;
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let mut path: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
        path.push(key);
        entries.push(Entry {
            path: path.join("."),
            depth: stack.len(),
            value: value.trim().to_owned(),
            doc: std::mem::take(&mut pending),
        });
        stack.push((indent, key.to_owned()));
    }
    (intro, entries)
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn render(example: &str) -> String {
    let (intro, entries) = parse(example);
    let mut out = String::new();
    out.push_str("# Configuration reference\n\n");
    out.push_str(
        "<!-- Generated from config/pipeline.example.yaml by crates/cdc-config/tests/docs.rs; do not edit.\n     \
         Regenerate: make docs-config -->\n\n",
    );
    out.push_str(
        "Every service reads one `pipeline.yaml`; this page lists every key, its default and its meaning, in \
         the order of [`config/pipeline.example.yaml`](../config/pipeline.example.yaml) (the same text, as \
         tables). A test fails when this page and the example file disagree, and another when the example \
         misses a field of the typed config (`crates/cdc-config`).\n\n",
    );
    out.push_str("## Conventions\n\n```text\n");
    // The intro paragraph minus its first line (the file's own title).
    for line in intro.iter().skip(1).skip_while(|l| l.is_empty()) {
        let _ = writeln!(out, "{line}");
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out.push_str("```\n");
    let mut in_table = false;
    for e in &entries {
        let doc = e.doc.join(" ");
        if e.depth == 0 {
            let _ = write!(out, "\n## `{}`\n\n{}\n", e.path, doc);
            in_table = false;
            if e.value.is_empty() {
                continue;
            }
        }
        if !in_table {
            out.push_str("\n| key | example value | description |\n|---|---|---|\n");
            in_table = true;
        }
        let value = if e.value.is_empty() {
            "*(section)*".to_owned()
        } else {
            format!("`{}`", cell(&e.value))
        };
        let _ = writeln!(out, "| `{}` | {} | {} |", e.path, value, cell(&doc));
    }
    out
}

#[test]
fn configuration_reference_is_generated_from_the_example() {
    let example = std::fs::read_to_string(repo().join("config/pipeline.example.yaml"))
        .expect("read config/pipeline.example.yaml");
    let rendered = render(&example);
    let target = repo().join("docs/configuration.md");
    if std::env::var_os("CDC_UPDATE_DOCS").is_some() {
        std::fs::write(&target, &rendered).expect("write docs/configuration.md");
        return;
    }
    let committed = std::fs::read_to_string(&target).unwrap_or_default();
    assert!(
        committed == rendered,
        "docs/configuration.md is out of date with config/pipeline.example.yaml; run `make docs-config`"
    );
    // Every key path of the example appears in the reference.
    let (_, entries) = parse(&example);
    for e in entries {
        assert!(
            committed.contains(&format!("`{}`", e.path)),
            "{} missing",
            e.path
        );
    }
}

#[test]
fn parser_tracks_nesting_lists_and_comments() {
    let (intro, entries) = parse(
        "# Title\n# intro line\n\n# a section\nkafka:\n  # hosts\n  hosts:\n    - a:1\n    - b:2\n  # nested\n  \
         tls:\n    # on or off\n    enabled: true\n# top\nname: x\n",
    );
    assert_eq!(intro, vec!["Title", "intro line", ""]);
    let got: Vec<(&str, usize, &str, String)> = entries
        .iter()
        .map(|e| (e.path.as_str(), e.depth, e.value.as_str(), e.doc.join(" ")))
        .collect();
    assert_eq!(
        got,
        vec![
            ("kafka", 0, "", "a section".to_owned()),
            ("kafka.hosts", 1, "a:1, b:2", "hosts".to_owned()),
            ("kafka.tls", 1, "", "nested".to_owned()),
            ("kafka.tls.enabled", 2, "true", "on or off".to_owned()),
            ("name", 0, "x", "top".to_owned()),
        ]
    );
}
