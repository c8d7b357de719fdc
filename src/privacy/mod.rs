//! Person data: the key store of per-person keys (`keystore`), sealing person-level fields with
//! them (`seal`), and erasure by destroying a key (crypto-shredding). It knows neither HTTP nor
//! the CLI; the command path (`app`) seals and reveals through it.

mod journal;
mod keystore;
mod seal;

pub use journal::{ErasureJournal, JournalEntry};
pub use keystore::{KeyState, KeyStore, MasterKey, PersonKey};
pub use seal::{
    is_sealed, open_sealed, person_named, seal, sealed_person_id, sealed_ref_in, REF_BLOCK, SEALED,
};
