//! Masking policy (classes and strategies per table and column) and the strategies themselves: keyed
//! hashing, tokenization, passthrough, redaction. Pure logic; the token vault is reached only through a trait.
