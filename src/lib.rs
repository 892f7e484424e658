#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! ovtp: Over Transfer Protocol.

pub mod constants;
pub mod error;
pub mod rand;

pub use error::{AlertCode, Error, Result};
pub use rand::Rng;
