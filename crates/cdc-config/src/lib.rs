//! Typed pipeline configuration: one `pipeline.yaml` with a section per stage, `CDC__SECTION__KEY`
//! environment overrides, secret references (`env:`, `file:`, `vault:`) and validation messages that
//! name the file, the key path and what was expected. Validation touches nothing outside the process.
