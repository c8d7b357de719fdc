//! The pure domain: commands, events, states, the rules (`decide`) and the fold (`evolve`).
//! No IO, no clock, no storage: time arrives in the command or the decision context.

mod command;
mod content_hash;
mod decide;
mod event;
mod findings;
mod policy;
pub mod schema;
mod types;

#[cfg(test)]
mod decide_tests;
#[cfg(test)]
mod findings_tests;

pub use command::*;
pub use content_hash::*;
pub use decide::*;
pub use event::*;
pub use findings::*;
pub use policy::*;
pub use types::*;
