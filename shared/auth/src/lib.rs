//! OAuth2 client credentials (RFC 6749 §4.4), JWT access tokens (RFC 9068) and bearer
//! verification (RFC 6750).

pub mod bearer;
pub mod config;
pub mod jwt;
pub mod keys;
pub mod oauth;
pub mod recent;
pub mod secret;
pub mod token_request;
pub mod token_service;
pub mod workspace;

pub use bearer::{Authenticator, BearerError, Principal};
pub use config::AuthConfig;
pub use jsonwebtoken::jwk::Jwk;
pub use jwt::{AccessClaims, IssuerPolicy, TokenError};
pub use keys::{GeneratedKey, SigningKey};
pub use oauth::{OAuthError, OAuthErrorKind};
pub use secret::{ClientSecret, SecretHash};
pub use workspace::{WorkspaceAuthenticator, WorkspaceError};
