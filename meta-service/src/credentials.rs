//! Salted password credentials in the SCRAM form (RFC 5802 / RFC 7677), so that one
//! stored record serves MQTT username/password checks and Kafka SASL/SCRAM alike, and no
//! plain password is ever stored.

use hmac::{Hmac, Mac};
use pbkdf2::pbkdf2_hmac;
use rand::RngCore;
use robustmq_proto::meta::ScramCredential;
use sha2::{Digest, Sha256, Sha512};

pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
pub const SCRAM_SHA_512: &str = "SCRAM-SHA-512";
const ITERATIONS: u32 = 4096;

/// SCRAM's StoredKey and ServerKey for a password, for one hash function.
macro_rules! scram_keys {
    ($name:ident, $hash:ty) => {
        fn $name(password: &str, salt: &[u8], iterations: u32) -> (Vec<u8>, Vec<u8>) {
            let mut salted = vec![0u8; <$hash as Digest>::output_size()];
            pbkdf2_hmac::<$hash>(password.as_bytes(), salt, iterations, &mut salted);
            let mac = |msg: &[u8]| {
                let mut m = <Hmac<$hash> as Mac>::new_from_slice(&salted)
                    .expect("HMAC takes any key length");
                m.update(msg);
                m.finalize().into_bytes().to_vec()
            };
            let client_key = mac(b"Client Key");
            let stored_key = <$hash>::digest(&client_key).to_vec();
            (stored_key, mac(b"Server Key"))
        }
    };
}

scram_keys!(keys_sha256, Sha256);
scram_keys!(keys_sha512, Sha512);

fn derive(mechanism: &str, password: &str, salt: &[u8], iterations: u32) -> (Vec<u8>, Vec<u8>) {
    match mechanism {
        SCRAM_SHA_512 => keys_sha512(password, salt, iterations),
        _ => keys_sha256(password, salt, iterations),
    }
}

fn credential(mechanism: &str, password: &str) -> ScramCredential {
    let mut salt = vec![0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let (stored_key, server_key) = derive(mechanism, password, &salt, ITERATIONS);
    ScramCredential {
        mechanism: mechanism.to_string(),
        salt: salt.into(),
        iterations: ITERATIONS,
        stored_key: stored_key.into(),
        server_key: server_key.into(),
    }
}

/// Fresh credentials for both SCRAM mechanisms.
pub fn derive_credentials(password: &str) -> Vec<ScramCredential> {
    vec![
        credential(SCRAM_SHA_256, password),
        credential(SCRAM_SHA_512, password),
    ]
}

/// Checks a password against a stored credential in constant time.
pub fn verify(c: &ScramCredential, password: &str) -> bool {
    let (stored, _) = derive(&c.mechanism, password, &c.salt, c.iterations);
    stored.len() == c.stored_key.len()
        && stored
            .iter()
            .zip(c.stored_key.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_password_verifies_and_wrong_one_does_not() {
        for c in derive_credentials("s3cret") {
            assert!(
                verify(&c, "s3cret"),
                "{} rejected the right password",
                c.mechanism
            );
            assert!(
                !verify(&c, "s3cre"),
                "{} accepted a wrong password",
                c.mechanism
            );
        }
    }
}
