//! The server side of Kafka's SASL exchange: PLAIN (RFC 4616) and SCRAM-SHA-256/512
//! (RFC 5802, RFC 7677) against the users in the meta-service.
//!
//! The connection owns one [`SaslServer`] per authentication and feeds it the client's
//! messages (the `auth_bytes` of SaslAuthenticate, or the raw tokens that follow a
//! SaslHandshake v0) until it answers [`SaslStep::Done`] or an error. This module never
//! touches a socket, so every rule is unit-tested without one.
//!
//! Invariants:
//! - Unknown user and wrong password are indistinguishable to the client: same message,
//!   same step (SCRAM answers an unknown user with a made-up salt and fails at the proof).
//! - No password or key material leaves this module; meta stores only SCRAM credentials
//!   and PLAIN passwords are checked by meta's `Authenticate`.
//! - An exchange is single use: once it has succeeded or failed, any further message is
//!   [`SaslError::IllegalState`].

mod plain;
mod scram;
#[cfg(test)]
mod tests;

use kafka_protocol::ResponseError;
use robustmq_proto::meta::{AuthenticateRequest, NameRequest, ScramCredential};

use crate::meta::MetaClient;

/// The mechanisms this broker offers, in the order SaslHandshake lists them.
pub const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

#[derive(Debug, thiserror::Error)]
pub enum SaslError {
    #[error(
        "unsupported SASL mechanism {0:?}; this broker offers PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512"
    )]
    UnsupportedMechanism(String),
    /// The text is sent to the client, so it never says whether the user exists.
    #[error("{0}")]
    AuthenticationFailed(String),
    #[error("{0}")]
    IllegalState(String),
    /// The user store could not answer; nothing is known about the credentials.
    #[error("cannot check credentials: {0}")]
    Meta(String),
}

impl SaslError {
    /// The Kafka error code for SaslHandshake / SaslAuthenticate responses.
    ///
    /// A meta outage maps to COORDINATOR_NOT_AVAILABLE (15), not SASL_AUTHENTICATION_FAILED:
    /// the Java client turns 33, 34 and 58 into an `AuthenticationException`, which it
    /// surfaces to the application without retrying, while any other code closes the
    /// connection as a network error and reconnects with backoff. A meta leader election
    /// must not make every producer fail for good; 15 is retriable and already means "a
    /// service this request depends on is not available right now".
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            SaslError::UnsupportedMechanism(_) => ResponseError::UnsupportedSaslMechanism.code(),
            SaslError::IllegalState(_) => ResponseError::IllegalSaslState.code(),
            SaslError::AuthenticationFailed(_) => ResponseError::SaslAuthenticationFailed.code(),
            SaslError::Meta(_) => ResponseError::CoordinatorNotAvailable.code(),
        }
    }
}

/// Where users come from: meta in production, a map in unit tests.
#[async_trait::async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// The user's SCRAM credentials; Ok(None) when there is no such user.
    async fn scram_credential(
        &self,
        user: &str,
        mechanism: &str,
    ) -> Result<Option<ScramCredential>, SaslError>;
    /// PLAIN: checks a password (meta's Authenticate RPC).
    async fn check_password(&self, user: &str, password: &str) -> Result<bool, SaslError>;
}

/// Users from the meta-service: `GetUser` for SCRAM credentials, `Authenticate` for PLAIN.
#[derive(Clone)]
pub struct MetaUserStore {
    meta: MetaClient,
}

impl MetaUserStore {
    pub fn new(meta: MetaClient) -> Self {
        MetaUserStore { meta }
    }
}

#[async_trait::async_trait]
impl UserStore for MetaUserStore {
    async fn scram_credential(
        &self,
        user: &str,
        mechanism: &str,
    ) -> Result<Option<ScramCredential>, SaslError> {
        let request = NameRequest {
            name: user.to_string(),
        };
        match self.meta.client().get_user(request).await {
            // A user without a credential for this mechanism cannot log in with it, which
            // is the same to the client as no user at all.
            Ok(r) => Ok(r
                .into_inner()
                .credentials
                .into_iter()
                .find(|c| c.mechanism == mechanism)),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(meta_error("GetUser", &s)),
        }
    }

    async fn check_password(&self, user: &str, password: &str) -> Result<bool, SaslError> {
        let request = AuthenticateRequest {
            name: user.to_string(),
            password: password.to_string(),
        };
        match self.meta.client().authenticate(request).await {
            Ok(r) => Ok(r.get_ref().ok),
            Err(s) => Err(meta_error("Authenticate", &s)),
        }
    }
}

fn meta_error(call: &str, status: &tonic::Status) -> SaslError {
    tracing::warn!(call, error = %status, "meta-service call for SASL failed");
    SaslError::Meta(format!(
        "meta-service {call} failed ({:?}): {}",
        status.code(),
        status.message()
    ))
}

/// What to send back after one client message.
#[derive(Debug, PartialEq, Eq)]
pub enum SaslStep {
    /// Send these bytes and expect another client message.
    Challenge(Vec<u8>),
    /// Authenticated as `principal`; send `response` (SCRAM server-final, empty for PLAIN).
    Done {
        principal: String,
        response: Vec<u8>,
    },
}

enum Exchange {
    Plain,
    Scram(scram::ScramServer),
}

/// One authentication exchange on one connection.
pub struct SaslServer {
    mechanism: &'static str,
    exchange: Exchange,
    over: bool,
}

impl SaslServer {
    /// Err(SaslError::UnsupportedMechanism) for anything not in MECHANISMS. Names are
    /// case-sensitive, as in Kafka.
    pub fn new(mechanism: &str) -> Result<Self, SaslError> {
        let exchange = match mechanism {
            plain::MECHANISM => Exchange::Plain,
            _ => match scram::Hash::from_mechanism(mechanism) {
                Some(hash) => Exchange::Scram(scram::ScramServer::new(hash)),
                None => return Err(SaslError::UnsupportedMechanism(mechanism.to_string())),
            },
        };
        Ok(Self::with_exchange(exchange))
    }

    /// A SCRAM exchange whose server nonce is fixed, to replay the RFC 7677 example.
    #[cfg(test)]
    fn scram_with_server_nonce(mechanism: &str, server_nonce: &str) -> Self {
        let hash = scram::Hash::from_mechanism(mechanism).expect("a SCRAM mechanism");
        Self::with_exchange(Exchange::Scram(scram::ScramServer::with_nonce(
            hash,
            server_nonce.to_string(),
        )))
    }

    fn with_exchange(exchange: Exchange) -> Self {
        let mechanism = match &exchange {
            Exchange::Plain => plain::MECHANISM,
            Exchange::Scram(s) => s.mechanism(),
        };
        SaslServer {
            mechanism,
            exchange,
            over: false,
        }
    }

    /// The mechanism this exchange runs, as named in MECHANISMS.
    pub fn mechanism(&self) -> &'static str {
        self.mechanism
    }

    /// Feeds one client message (the auth_bytes of SaslAuthenticate, or one raw token
    /// after SaslHandshake v0) and returns what to send back.
    pub async fn step(
        &mut self,
        users: &dyn UserStore,
        client_message: &[u8],
    ) -> Result<SaslStep, SaslError> {
        if self.over {
            return Err(SaslError::IllegalState(format!(
                "the {} exchange is already over",
                self.mechanism
            )));
        }
        let result = match &mut self.exchange {
            Exchange::Plain => plain::authenticate(users, client_message).await,
            Exchange::Scram(s) => s.step(users, client_message).await,
        };
        // Kafka closes the connection after a failure and never re-runs a finished
        // exchange; refusing here keeps a replayed message from being evaluated twice.
        self.over = !matches!(result, Ok(SaslStep::Challenge(_)));
        result
    }
}

/// The one failure text for unknown users and wrong passwords alike.
fn invalid_credentials(mechanism: &str) -> SaslError {
    SaslError::AuthenticationFailed(format!(
        "Authentication failed: invalid credentials with SASL mechanism {mechanism}"
    ))
}
