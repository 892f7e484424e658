//! The I/O layer under the server and the client: [`conn`] owns the socket
//! and its deadlines, [`channel`] moves sealed records and whole messages
//! over it, [`pipes`] streams files (a reader thread beside the sending
//! connection's own), and [`sealing`] seals file data on several cores.

pub mod channel;
pub mod conn;
pub mod pipes;
pub mod sealing;
