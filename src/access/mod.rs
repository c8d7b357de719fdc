//! Who may do what, transport-free: tokens (the token file, their hashes, expiry, revocation,
//! rotation), roles and their scopes (directorates, partner centres). The HTTP layer checks
//! requests with it (following the token file as it changes); the CLI writes token files with
//! it. It holds no business rule and knows no transport.

pub mod live;
pub mod token_file;
pub mod tokens;

pub use live::LiveTokens;
pub use token_file::{add_token, revoke_token, rotate_token};
pub use tokens::{
    hash_token, new_token, Auth, PreviousSecret, Principal, Role, TokenEntry, TokenError,
    TokenFile, TokenStatus,
};
