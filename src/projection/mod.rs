//! Projections: declarative definitions from `projections/*.toml`, the engine that folds the
//! log into them with checkpoints saved atomically, rebuilds, and `as_of` / `known_at` reads.
//! Projections read the log; they never write to it.

mod definition;
mod engine;
mod error;
mod report;
mod series;
mod state;

pub use definition::{load_definitions, Agg, Bucket, Definition, DefinitionError, Fold};
pub use engine::{db_path_for, Engine, Rebuilt, Status};
pub use error::ProjectionError;
pub use report::{Report, Row};
pub use series::{FindingView, PersonFinding};
pub use state::{State, Val};
