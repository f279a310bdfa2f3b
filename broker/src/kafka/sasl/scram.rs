//! SASL SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka clients speak it:
//! no channel binding, no delegation tokens, credentials (salt, iterations, StoredKey,
//! ServerKey) from the user store, so the server never sees or keeps a password.
//!
//! ```text
//! client-first   gs2-header client-first-bare
//!                  gs2-header         = ("n" | "y") "," ["a=" authzid] ","
//!                  client-first-bare  = "n=" saslname ",r=" c-nonce ["," key "=" value]*
//! server-first   "r=" c-nonce s-nonce ",s=" base64(salt) ",i=" iterations
//! client-final   "c=" base64(gs2-header) ",r=" c-nonce s-nonce ["," ext]* ",p=" base64(proof)
//! server-final   "v=" base64(ServerSignature)
//!
//! AuthMessage     = client-first-bare "," server-first "," client-final-without-proof
//! ClientSignature = HMAC(StoredKey, AuthMessage);   ClientKey = proof XOR ClientSignature
//! accepted iff H(ClientKey) == StoredKey;  ServerSignature = HMAC(ServerKey, AuthMessage)
//! ```

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use meta_service::credentials::{SCRAM_SHA_256, SCRAM_SHA_512};
use rand::RngCore;
use robustmq_proto::meta::ScramCredential;
use sha2::{Digest, Sha256, Sha512};

use super::{SaslError, SaslStep, UserStore, invalid_credentials};

/// What meta's `derive_credentials` uses; an unknown user is offered the same count and
/// salt length so that the server-first message does not give it away.
const UNKNOWN_USER_ITERATIONS: u32 = 4096;
const UNKNOWN_USER_SALT_LEN: usize = 16;
/// Random bytes in the server's half of the nonce (RFC 5802 asks for enough to be unique).
const SERVER_NONCE_BYTES: usize = 24;

#[derive(Clone, Copy, Debug)]
pub(super) enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    pub(super) fn from_mechanism(mechanism: &str) -> Option<Hash> {
        match mechanism {
            SCRAM_SHA_256 => Some(Hash::Sha256),
            SCRAM_SHA_512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    fn mechanism(self) -> &'static str {
        match self {
            Hash::Sha256 => SCRAM_SHA_256,
            Hash::Sha512 => SCRAM_SHA_512,
        }
    }

    fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => <Sha256 as Digest>::output_size(),
            Hash::Sha512 => <Sha512 as Digest>::output_size(),
        }
    }

    fn hmac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => mac::<Hmac<Sha256>>(key, message),
            Hash::Sha512 => mac::<Hmac<Sha512>>(key, message),
        }
    }

    fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(message).to_vec(),
            Hash::Sha512 => Sha512::digest(message).to_vec(),
        }
    }
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut m = <M as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(message);
    m.finalize().into_bytes().to_vec()
}

/// One SCRAM exchange: client-first → server-first → client-final → server-final.
pub(super) struct ScramServer {
    hash: Hash,
    server_nonce: String,
    state: State,
}

enum State {
    ClientFirst,
    ClientFinal(Box<Pending>),
    Over,
}

/// What the client-final message is checked against.
struct Pending {
    user: String,
    gs2_header: String,
    nonce: String,
    client_first_bare: String,
    server_first: String,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
    /// False when the user is unknown: the exchange runs to the proof and fails there.
    known: bool,
}

impl ScramServer {
    pub(super) fn new(hash: Hash) -> Self {
        let mut bytes = [0u8; SERVER_NONCE_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self::with_nonce(hash, B64.encode(bytes))
    }

    pub(super) fn with_nonce(hash: Hash, server_nonce: String) -> Self {
        ScramServer {
            hash,
            server_nonce,
            state: State::ClientFirst,
        }
    }

    pub(super) fn mechanism(&self) -> &'static str {
        self.hash.mechanism()
    }

    pub(super) async fn step(
        &mut self,
        users: &dyn UserStore,
        message: &[u8],
    ) -> Result<SaslStep, SaslError> {
        // Whatever happens below, a failed step leaves the exchange over.
        match std::mem::replace(&mut self.state, State::Over) {
            State::ClientFirst => {
                let pending = self.client_first(users, message).await?;
                let server_first = pending.server_first.clone().into_bytes();
                self.state = State::ClientFinal(Box::new(pending));
                Ok(SaslStep::Challenge(server_first))
            }
            State::ClientFinal(pending) => self.client_final(*pending, message),
            State::Over => Err(SaslError::IllegalState(format!(
                "the {} exchange is already over",
                self.mechanism()
            ))),
        }
    }

    async fn client_first(
        &self,
        users: &dyn UserStore,
        message: &[u8],
    ) -> Result<Pending, SaslError> {
        let text = std::str::from_utf8(message).map_err(|_| malformed("message is not UTF-8"))?;
        let first = parse_client_first(text).map_err(malformed)?;
        let hash = self.hash;
        let credential = users
            .scram_credential(&first.user, hash.mechanism())
            .await?
            .filter(|c| self.usable(&first.user, c));
        let (salt, iterations, stored_key, server_key, known) = match credential {
            Some(c) => (
                c.salt.to_vec(),
                c.iterations,
                c.stored_key.to_vec(),
                c.server_key.to_vec(),
                true,
            ),
            None => (
                unknown_user_salt(hash, &first.user),
                UNKNOWN_USER_ITERATIONS,
                vec![0; hash.output_len()],
                vec![0; hash.output_len()],
                false,
            ),
        };
        let nonce = format!("{}{}", first.nonce, self.server_nonce);
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        Ok(Pending {
            user: first.user,
            gs2_header: first.gs2_header.to_string(),
            nonce,
            client_first_bare: first.bare.to_string(),
            server_first,
            stored_key,
            server_key,
            known,
        })
    }

    /// A stored credential that cannot be right for this hash is logged and treated as
    /// absent, so the client learns nothing from it.
    fn usable(&self, user: &str, c: &ScramCredential) -> bool {
        let len = self.hash.output_len();
        let ok = c.mechanism == self.mechanism()
            && c.iterations > 0
            && !c.salt.is_empty()
            && c.stored_key.len() == len
            && c.server_key.len() == len;
        if !ok {
            tracing::warn!(
                user,
                mechanism = self.mechanism(),
                "stored SCRAM credential is malformed"
            );
        }
        ok
    }

    fn client_final(&self, p: Pending, message: &[u8]) -> Result<SaslStep, SaslError> {
        let hash = self.hash;
        let text = std::str::from_utf8(message).map_err(|_| malformed("message is not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| malformed("client-final message does not end with p=proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or_else(|| malformed("client-final message does not start with c="))?;
        // Without channel binding, c= must carry back exactly the GS2 header it opened with.
        if B64.decode(binding).ok().as_deref() != Some(p.gs2_header.as_bytes()) {
            return Err(malformed("channel binding does not match the GS2 header"));
        }
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or_else(|| malformed("client-final message has no r=nonce"))?;
        // librdkafka before 2.6.1 (Debian's kcat, many pinned apps) sends its own nonce
        // again in front of the combined one (librdkafka#4895). The combined nonce must
        // still be there in full, and the proof is computed over exactly what was sent,
        // so accepting that one shape keeps those clients working without weakening the
        // check.
        let client_nonce = &p.nonce[..p.nonce.len() - self.server_nonce.len()];
        let doubled = nonce.strip_prefix(client_nonce) == Some(p.nonce.as_str());
        if nonce != p.nonce && !doubled {
            return Err(malformed("nonce does not match the server-first message"));
        }
        let proof = B64
            .decode(proof)
            .ok()
            .filter(|p| p.len() == hash.output_len())
            .ok_or_else(|| malformed("client proof is not a base64 digest"))?;

        let auth_message = format!(
            "{},{},{}",
            p.client_first_bare, p.server_first, without_proof
        );
        let client_signature = hash.hmac(&p.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let matches = constant_time_eq(&hash.digest(&client_key), &p.stored_key);
        if !(matches && p.known) {
            return Err(invalid_credentials(self.mechanism()));
        }
        let server_signature = hash.hmac(&p.server_key, auth_message.as_bytes());
        Ok(SaslStep::Done {
            principal: p.user,
            response: format!("v={}", B64.encode(server_signature)).into_bytes(),
        })
    }
}

fn malformed(why: &str) -> SaslError {
    SaslError::AuthenticationFailed(format!("SASL/SCRAM: {why}"))
}

#[derive(Debug, PartialEq, Eq)]
struct ClientFirst<'a> {
    gs2_header: &'a str,
    user: String,
    nonce: &'a str,
    bare: &'a str,
}

fn parse_client_first(text: &str) -> Result<ClientFirst<'_>, &'static str> {
    let (flag, rest) = text
        .split_once(',')
        .ok_or("malformed client-first message")?;
    match flag {
        // "y": the client could bind but believes we cannot, which is true.
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err("channel binding is not supported"),
        _ => return Err("malformed GS2 header"),
    }
    let (authzid, bare) = rest.split_once(',').ok_or("malformed GS2 header")?;
    let gs2_header = &text[..text.len() - bare.len()];
    let authzid = match authzid {
        "" => None,
        a => Some(sasl_name(
            a.strip_prefix("a=").ok_or("malformed authorization id")?,
        )?),
    };

    let mut attrs = bare.split(',');
    let user_attr = attrs.next().unwrap_or_default();
    if user_attr.starts_with("m=") {
        return Err("mandatory extensions are not supported");
    }
    let user = sasl_name(user_attr.strip_prefix("n=").ok_or("expected n=username")?)?;
    if user.is_empty() {
        return Err("username not specified");
    }
    if authzid.as_ref().is_some_and(|a| *a != user) {
        return Err("authorization id differs from the username");
    }
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or("expected r=nonce")?;
    if nonce.is_empty() || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err("nonce must be printable ASCII");
    }
    for extension in attrs {
        match extension.split_once('=') {
            Some(("tokenauth", _)) => return Err("delegation tokens are not supported"),
            // Kafka passes other SCRAM extensions to callbacks we do not have; ignore them.
            Some((key, _)) if !key.is_empty() => {}
            _ => return Err("malformed extension"),
        }
    }
    Ok(ClientFirst {
        gs2_header,
        user,
        nonce,
        bare,
    })
}

/// Decodes RFC 5802's saslname: `=2C` is ',', `=3D` is '=', any other '=' is an error.
fn sasl_name(raw: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err("malformed username escape (only =2C and =3D are allowed)"),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A salt for a user that does not exist: stable for the life of the process, so asking
/// twice gives the same answer as it would for a real user, and not derivable from
/// outside because it is keyed by a random secret.
fn unknown_user_salt(hash: Hash, user: &str) -> Vec<u8> {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    let secret = SECRET.get_or_init(|| {
        let mut s = [0u8; 32];
        rand::rng().fill_bytes(&mut s);
        s
    });
    let message = format!("{}\0{user}", hash.mechanism());
    let mut salt = Hash::Sha256.hmac(secret, message.as_bytes());
    salt.truncate(UNKNOWN_USER_SALT_LEN);
    salt
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_name_decodes_the_two_escapes_and_refuses_others() {
        assert_eq!(sasl_name("plain").unwrap(), "plain");
        assert_eq!(sasl_name("a=2Cb=3Dc").unwrap(), "a,b=c");
        assert_eq!(sasl_name("=3D=3D").unwrap(), "==");
        for bad in ["a=", "a=2", "a=41", "a=2c", "=3d", "x=é"] {
            assert!(
                sasl_name(bad).is_err(),
                "{bad:?} decoded to {:?}",
                sasl_name(bad)
            );
        }
    }

    #[test]
    fn client_first_splits_header_bare_user_and_nonce() {
        let text = "n,a=bob,n=bob,r=abc%def,ext=1";
        let first = parse_client_first(text).unwrap();
        assert_eq!(
            first,
            ClientFirst {
                gs2_header: "n,a=bob,",
                user: "bob".to_string(),
                nonce: "abc%def",
                bare: "n=bob,r=abc%def,ext=1",
            }
        );
    }

    #[test]
    fn client_first_refusals_say_why() {
        let cases = [
            ("p=tls-unique,,n=u,r=x", "channel binding is not supported"),
            ("n,,m=ext,n=u,r=x", "mandatory extensions are not supported"),
            (
                "n,,n=u,r=x,tokenauth=true",
                "delegation tokens are not supported",
            ),
            (
                "n,a=other,n=u,r=x",
                "authorization id differs from the username",
            ),
            ("n,,n=,r=x", "username not specified"),
            ("n,,n=u,r=", "nonce must be printable ASCII"),
            ("n,,n=u,r=a b", "nonce must be printable ASCII"),
            ("n,,n=u", "expected r=nonce"),
            ("n,,r=x,n=u", "expected n=username"),
            ("x,,n=u,r=x", "malformed GS2 header"),
            ("n,,n=u,r=x,=v", "malformed extension"),
            ("n", "malformed client-first message"),
        ];
        for (text, why) in cases {
            assert_eq!(parse_client_first(text).err(), Some(why), "for {text:?}");
        }
    }

    #[test]
    fn unknown_user_salt_is_stable_per_user_and_mechanism() {
        let a = unknown_user_salt(Hash::Sha256, "ghost");
        assert_eq!(a.len(), UNKNOWN_USER_SALT_LEN);
        assert_eq!(a, unknown_user_salt(Hash::Sha256, "ghost"));
        assert_ne!(a, unknown_user_salt(Hash::Sha512, "ghost"));
        assert_ne!(a, unknown_user_salt(Hash::Sha256, "ghost2"));
    }

    #[test]
    fn unknown_users_get_the_iterations_and_salt_length_meta_uses() {
        for c in meta_service::credentials::derive_credentials("x") {
            assert_eq!(c.iterations, UNKNOWN_USER_ITERATIONS, "{}", c.mechanism);
            assert_eq!(c.salt.len(), UNKNOWN_USER_SALT_LEN, "{}", c.mechanism);
        }
    }
}
