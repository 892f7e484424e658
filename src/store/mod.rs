//! The store: where received files go and where sent files come from.
//! [`names`] confines remote names to the files directory, [`partial`] keeps
//! unverified bytes away from final names, [`locks`] lets one writer at a
//! time at a name.

pub mod listing;
pub mod locks;
pub mod names;
pub mod partial;

pub use names::{PARTIAL_SUFFIX, check_name, check_name_for_write};
pub use partial::{hex, partial_path, upload_partial_path};
