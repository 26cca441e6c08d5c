//! One module per `cdcctl` command. Exit codes: 0 success / clean, 1 differences or findings
//! (verify, audit), 2 error.

pub mod audit;
pub mod dashboard;
pub mod detokenize;
pub mod dlq;
pub mod load;
pub mod replay;
pub mod status;
pub mod vault;
pub mod verify;
