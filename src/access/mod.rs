//! Who may do what, transport-free: tokens (the token file, their hashes, expiry), roles and
//! their scopes (directorates, partner centres). The HTTP layer checks requests with it; the
//! CLI writes token files with it. It holds no business rule and knows no transport.

pub mod tokens;

pub use tokens::{
    add_token, hash_token, new_token, Auth, Principal, Role, TokenEntry, TokenError, TokenFile,
};
