//! SASL PLAIN (RFC 4616): one client message, `[authzid] NUL authcid NUL passwd`, checked
//! by meta's `Authenticate`. Meant for TLS listeners, since the password crosses the wire.

use super::{SaslError, SaslStep, UserStore, invalid_credentials};

pub(super) const MECHANISM: &str = "PLAIN";

pub(super) async fn authenticate(
    users: &dyn UserStore,
    message: &[u8],
) -> Result<SaslStep, SaslError> {
    let failed = |why: &str| SaslError::AuthenticationFailed(format!("SASL/PLAIN: {why}"));
    let text = std::str::from_utf8(message).map_err(|_| failed("message is not UTF-8"))?;
    let fields: Vec<&str> = text.split('\0').collect();
    let [authzid, user, password] = fields[..] else {
        return Err(failed(&format!(
            "expected 3 NUL-separated fields, got {}",
            fields.len()
        )));
    };
    if user.is_empty() {
        return Err(failed("username not specified"));
    }
    if password.is_empty() {
        return Err(failed("password not specified"));
    }
    // The broker has no notion of acting on behalf of another principal.
    if !authzid.is_empty() && authzid != user {
        return Err(failed("authorization id differs from the username"));
    }
    if users.check_password(user, password).await? {
        Ok(SaslStep::Done {
            principal: user.to_string(),
            response: Vec::new(),
        })
    } else {
        Err(invalid_credentials(MECHANISM))
    }
}
