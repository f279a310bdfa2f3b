//! Exchanges driven through [`SaslServer`] by a SCRAM client written here from RFC 5802
//! (it shares no code with the server), against credentials made by meta's
//! `derive_credentials`, plus the RFC 7677 example.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use meta_service::credentials::{derive_credentials, verify};
use pbkdf2::pbkdf2_hmac;
use rand::RngCore;
use robustmq_proto::meta::ScramCredential;
use sha2::{Digest, Sha256, Sha512};

use super::*;

const SHA256: &str = "SCRAM-SHA-256";
const SHA512: &str = "SCRAM-SHA-512";

/// Users in a map; PLAIN checks the first credential, as meta's Authenticate does.
#[derive(Default)]
struct MapStore {
    users: HashMap<String, Vec<ScramCredential>>,
}

impl MapStore {
    fn with_user(mut self, name: &str, password: &str) -> Self {
        self.users
            .insert(name.to_string(), derive_credentials(password));
        self
    }
}

#[async_trait::async_trait]
impl UserStore for MapStore {
    async fn scram_credential(
        &self,
        user: &str,
        mechanism: &str,
    ) -> Result<Option<ScramCredential>, SaslError> {
        Ok(self
            .users
            .get(user)
            .and_then(|cs| cs.iter().find(|c| c.mechanism == mechanism).cloned()))
    }

    async fn check_password(&self, user: &str, password: &str) -> Result<bool, SaslError> {
        Ok(self
            .users
            .get(user)
            .and_then(|cs| cs.first())
            .is_some_and(|c| verify(c, password)))
    }
}

/// A user store whose meta-service is down.
struct DownStore;

#[async_trait::async_trait]
impl UserStore for DownStore {
    async fn scram_credential(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Option<ScramCredential>, SaslError> {
        Err(SaslError::Meta(
            "meta-service GetUser failed (Unavailable)".into(),
        ))
    }

    async fn check_password(&self, _: &str, _: &str) -> Result<bool, SaslError> {
        Err(SaslError::Meta(
            "meta-service Authenticate failed (Unavailable)".into(),
        ))
    }
}

fn hmac(mechanism: &str, key: &[u8], message: &[u8]) -> Vec<u8> {
    match mechanism {
        SHA256 => {
            let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
            m.update(message);
            m.finalize().into_bytes().to_vec()
        }
        _ => {
            let mut m = Hmac::<Sha512>::new_from_slice(key).unwrap();
            m.update(message);
            m.finalize().into_bytes().to_vec()
        }
    }
}

fn h(mechanism: &str, message: &[u8]) -> Vec<u8> {
    match mechanism {
        SHA256 => Sha256::digest(message).to_vec(),
        _ => Sha512::digest(message).to_vec(),
    }
}

/// SaltedPassword, per RFC 5802 section 3.
fn salted_password(mechanism: &str, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    match mechanism {
        SHA256 => {
            let mut out = vec![0; 32];
            pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
            out
        }
        _ => {
            let mut out = vec![0; 64];
            pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, iterations, &mut out);
            out
        }
    }
}

/// The client side of SCRAM, as a Kafka client runs it.
struct ScramClient {
    mechanism: &'static str,
    password: String,
    gs2_header: String,
    bare: String,
    client_nonce: String,
}

/// What the client sends last and what it expects the server to prove.
struct ClientFinal {
    message: Vec<u8>,
    expected_server_final: Vec<u8>,
}

impl ScramClient {
    fn new(mechanism: &'static str, escaped_user: &str, password: &str) -> Self {
        let mut bytes = [0u8; 18];
        rand::rng().fill_bytes(&mut bytes);
        Self::with_header(mechanism, "n,,", escaped_user, password, &B64.encode(bytes))
    }

    fn with_header(
        mechanism: &'static str,
        gs2_header: &str,
        escaped_user: &str,
        password: &str,
        client_nonce: &str,
    ) -> Self {
        ScramClient {
            mechanism,
            password: password.to_string(),
            gs2_header: gs2_header.to_string(),
            bare: format!("n={escaped_user},r={client_nonce}"),
            client_nonce: client_nonce.to_string(),
        }
    }

    fn first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2_header, self.bare).into_bytes()
    }

    fn last(&self, server_first: &[u8]) -> ClientFinal {
        let server_first = std::str::from_utf8(server_first).unwrap();
        let nonce = attr(server_first, "r=");
        self.last_with(server_first, &nonce, &self.gs2_header)
    }

    /// The final message for a chosen nonce and channel-binding header, signed correctly
    /// for them, so only the server's consistency checks can catch a change.
    fn last_with(&self, server_first: &str, nonce: &str, binding: &str) -> ClientFinal {
        let salt = B64.decode(attr(server_first, "s=")).unwrap();
        let iterations: u32 = attr(server_first, "i=").parse().unwrap();
        let salted = salted_password(self.mechanism, &self.password, &salt, iterations);
        let client_key = hmac(self.mechanism, &salted, b"Client Key");
        let stored_key = h(self.mechanism, &client_key);
        let server_key = hmac(self.mechanism, &salted, b"Server Key");
        let without_proof = format!("c={},r={nonce}", B64.encode(binding));
        let auth_message = format!("{},{server_first},{without_proof}", self.bare);
        let signature = hmac(self.mechanism, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_signature = hmac(self.mechanism, &server_key, auth_message.as_bytes());
        ClientFinal {
            message: format!("{without_proof},p={}", B64.encode(proof)).into_bytes(),
            expected_server_final: format!("v={}", B64.encode(server_signature)).into_bytes(),
        }
    }
}

fn attr(message: &str, prefix: &str) -> String {
    message
        .split(',')
        .find_map(|a| a.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {message:?}"))
        .to_string()
}

fn challenge(step: Result<SaslStep, SaslError>) -> Vec<u8> {
    match step {
        Ok(SaslStep::Challenge(c)) => c,
        other => panic!("expected a challenge, got {other:?}"),
    }
}

fn auth_failure(step: Result<SaslStep, SaslError>) -> String {
    match step {
        Err(e @ SaslError::AuthenticationFailed(_)) => {
            assert_eq!(e.kafka_error_code(), 58);
            e.to_string()
        }
        other => panic!("expected AuthenticationFailed, got {other:?}"),
    }
}

async fn full_exchange(mechanism: &'static str) {
    let users = MapStore::default().with_user("alice", "pencil-42");
    let client = ScramClient::new(mechanism, "alice", "pencil-42");
    let mut server = SaslServer::new(mechanism).unwrap();
    assert_eq!(server.mechanism(), mechanism);

    let server_first = challenge(server.step(&users, &client.first()).await);
    let text = String::from_utf8(server_first.clone()).unwrap();
    let nonce = attr(&text, "r=");
    let server_nonce = nonce
        .strip_prefix(&client.client_nonce)
        .unwrap_or_else(|| panic!("server nonce {nonce:?} does not extend the client's"));
    assert!(
        server_nonce.len() >= 32,
        "server nonce {server_nonce:?} too short"
    );

    let last = client.last(&server_first);
    match server.step(&users, &last.message).await {
        Ok(SaslStep::Done {
            principal,
            response,
        }) => {
            assert_eq!(principal, "alice");
            assert_eq!(
                String::from_utf8_lossy(&response),
                String::from_utf8_lossy(&last.expected_server_final),
                "server signature does not prove knowledge of ServerKey"
            );
        }
        other => panic!("{mechanism}: expected Done, got {other:?}"),
    }

    let mut again = SaslServer::new(mechanism).unwrap();
    let other_first = challenge(again.step(&users, &client.first()).await);
    assert_ne!(
        other_first, server_first,
        "two exchanges got the same server nonce"
    );
}

#[tokio::test]
async fn scram_sha_256_exchange_authenticates_and_proves_the_server() {
    full_exchange(SHA256).await;
}

#[tokio::test]
async fn scram_sha_512_exchange_authenticates_and_proves_the_server() {
    full_exchange(SHA512).await;
}

#[tokio::test]
async fn scram_wrong_password_and_unknown_user_fail_the_same_way_at_the_same_step() {
    let users = MapStore::default().with_user("alice", "pencil-42");
    for mechanism in [SHA256, SHA512] {
        let mut failures = Vec::new();
        let mut firsts = Vec::new();
        for (user, password) in [("alice", "wrong"), ("ghost", "pencil-42"), ("ghost", "x")] {
            let client = ScramClient::new(mechanism, user, password);
            let mut server = SaslServer::new(mechanism).unwrap();
            let first =
                String::from_utf8(challenge(server.step(&users, &client.first()).await)).unwrap();
            let last = client.last(first.as_bytes());
            failures.push(auth_failure(server.step(&users, &last.message).await));
            firsts.push(first);
        }
        assert!(
            failures.iter().all(|f| *f == failures[0]),
            "{mechanism}: failures differ: {failures:?}"
        );
        // An unknown user's server-first looks like a real one and does not change between
        // attempts, so probing twice does not tell a made-up salt from a stored one.
        let real_salt = B64.decode(attr(&firsts[0], "s=")).unwrap();
        let ghost_salt = B64.decode(attr(&firsts[1], "s=")).unwrap();
        assert_eq!(ghost_salt.len(), real_salt.len(), "{mechanism}");
        assert_eq!(
            attr(&firsts[1], "i="),
            attr(&firsts[0], "i="),
            "{mechanism}"
        );
        assert_eq!(
            attr(&firsts[1], "s="),
            attr(&firsts[2], "s="),
            "{mechanism}"
        );
    }
}

#[tokio::test]
async fn scram_tampered_nonce_is_refused_even_with_a_valid_proof_for_it() {
    let users = MapStore::default().with_user("alice", "pencil-42");
    let client = ScramClient::new(SHA256, "alice", "pencil-42");
    let mut server = SaslServer::new(SHA256).unwrap();
    let server_first = challenge(server.step(&users, &client.first()).await);
    let text = String::from_utf8(server_first).unwrap();
    let tampered = format!("{}A", attr(&text, "r="));
    let last = client.last_with(&text, &tampered, &client.gs2_header);
    let why = auth_failure(server.step(&users, &last.message).await);
    assert!(why.contains("nonce"), "{why}");
}

#[tokio::test]
async fn scram_accepts_old_librdkafkas_doubled_client_nonce_and_nothing_looser() {
    let users = MapStore::default().with_user("alice", "pencil-42");
    for (prefix_with, ok) in [("client", true), ("other", false)] {
        let client = ScramClient::new(SHA256, "alice", "pencil-42");
        let mut server = SaslServer::new(SHA256).unwrap();
        let server_first = challenge(server.step(&users, &client.first()).await);
        let text = String::from_utf8(server_first).unwrap();
        let prefix = if prefix_with == "client" {
            client.client_nonce.clone()
        } else {
            "x".repeat(client.client_nonce.len())
        };
        // librdkafka < 2.6.1: r = client nonce + (client nonce + server nonce).
        let doubled = format!("{prefix}{}", attr(&text, "r="));
        let last = client.last_with(&text, &doubled, &client.gs2_header);
        let step = server.step(&users, &last.message).await;
        if ok {
            match step {
                Ok(SaslStep::Done {
                    principal,
                    response,
                }) => {
                    assert_eq!(principal, "alice");
                    assert_eq!(response, last.expected_server_final);
                }
                other => panic!("doubled client nonce refused: {other:?}"),
            }
        } else {
            assert!(auth_failure(step).contains("nonce"));
        }
    }
}

#[tokio::test]
async fn scram_replayed_final_is_refused_on_a_new_exchange_and_on_the_finished_one() {
    let users = MapStore::default().with_user("alice", "pencil-42");
    let client = ScramClient::new(SHA512, "alice", "pencil-42");
    let mut server = SaslServer::new(SHA512).unwrap();
    let server_first = challenge(server.step(&users, &client.first()).await);
    let last = client.last(&server_first);
    assert!(matches!(
        server.step(&users, &last.message).await,
        Ok(SaslStep::Done { .. })
    ));

    match server.step(&users, &last.message).await {
        Err(e @ SaslError::IllegalState(_)) => assert_eq!(e.kafka_error_code(), 34),
        other => panic!("a finished exchange took another message: {other:?}"),
    }

    // An eavesdropper replays both client messages on a new connection: the server's
    // fresh nonce makes the recorded final message worthless.
    let mut replay = SaslServer::new(SHA512).unwrap();
    challenge(replay.step(&users, &client.first()).await);
    auth_failure(replay.step(&users, &last.message).await);
    match replay.step(&users, &client.first()).await {
        Err(SaslError::IllegalState(_)) => {}
        other => panic!("a failed exchange took another message: {other:?}"),
    }
}

#[tokio::test]
async fn scram_username_escapes_are_decoded_into_the_principal() {
    let users = MapStore::default().with_user("a,b=c", "pw");
    let client = ScramClient::new(SHA256, "a=2Cb=3Dc", "pw");
    let mut server = SaslServer::new(SHA256).unwrap();
    let server_first = challenge(server.step(&users, &client.first()).await);
    match server
        .step(&users, &client.last(&server_first).message)
        .await
    {
        Ok(SaslStep::Done { principal, .. }) => assert_eq!(principal, "a,b=c"),
        other => panic!("expected Done, got {other:?}"),
    }
    let mut server = SaslServer::new(SHA256).unwrap();
    auth_failure(server.step(&users, b"n,,n=a=2cb,r=abc").await);
}

#[tokio::test]
async fn scram_gs2_header_rules() {
    let users = MapStore::default().with_user("alice", "pw");
    for header in ["y,,", "n,a=alice,"] {
        let client = ScramClient::with_header(SHA256, header, "alice", "pw", "nonce1");
        let mut server = SaslServer::new(SHA256).unwrap();
        let first = challenge(server.step(&users, &client.first()).await);
        assert!(
            matches!(
                server.step(&users, &client.last(&first).message).await,
                Ok(SaslStep::Done { .. })
            ),
            "header {header:?} refused"
        );
    }

    // c= must echo the header the exchange opened with.
    let client = ScramClient::with_header(SHA256, "y,,", "alice", "pw", "nonce2");
    let mut server = SaslServer::new(SHA256).unwrap();
    let first = String::from_utf8(challenge(server.step(&users, &client.first()).await)).unwrap();
    let last = client.last_with(&first, &attr(&first, "r="), "n,,");
    let why = auth_failure(server.step(&users, &last.message).await);
    assert!(why.contains("channel binding"), "{why}");

    for refused in [
        "p=tls-server-end-point,,n=alice,r=abc",
        "n,,n=alice,r=abc,tokenauth=true",
        "n,a=bob,n=alice,r=abc",
        "n,,m=x,n=alice,r=abc",
    ] {
        let mut server = SaslServer::new(SHA256).unwrap();
        auth_failure(server.step(&users, refused.as_bytes()).await);
    }
}

#[tokio::test]
async fn rfc7677_example_is_reproduced_byte_for_byte() {
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let salted = salted_password(SHA256, "pencil", &salt, 4096);
    let credential = ScramCredential {
        mechanism: SHA256.to_string(),
        salt: salt.into(),
        iterations: 4096,
        stored_key: h(SHA256, &hmac(SHA256, &salted, b"Client Key")).into(),
        server_key: hmac(SHA256, &salted, b"Server Key").into(),
    };
    let mut users = MapStore::default();
    users.users.insert("user".into(), vec![credential]);

    let mut server = SaslServer::scram_with_server_nonce(SHA256, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
    let first = challenge(
        server
            .step(&users, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
            .await,
    );
    assert_eq!(
        String::from_utf8_lossy(&first),
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    );
    let last = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                 p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    assert_eq!(
        server.step(&users, last).await.unwrap(),
        SaslStep::Done {
            principal: "user".into(),
            response: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec(),
        }
    );
}

#[tokio::test]
async fn truncated_and_garbled_messages_fail_without_panicking() {
    let users = MapStore::default().with_user("alice", "pw");
    let nonce = "SERVERNONCESERVERNONCESERVERNONC";
    let client = ScramClient::with_header(SHA256, "n,,", "alice", "pw", "clientnonce");
    let mut server = SaslServer::scram_with_server_nonce(SHA256, nonce);
    let first = challenge(server.step(&users, &client.first()).await);
    let last = client.last(&first).message;

    for cut in 0..last.len() {
        let mut server = SaslServer::scram_with_server_nonce(SHA256, nonce);
        challenge(server.step(&users, &client.first()).await);
        auth_failure(server.step(&users, &last[..cut]).await);
    }
    let client_first = client.first();
    for cut in 0..client_first.len() {
        let mut server = SaslServer::new(SHA256).unwrap();
        // A prefix that still ends inside the nonce is a valid, shorter client-first.
        if let Err(e) = server.step(&users, &client_first[..cut]).await {
            assert!(matches!(e, SaslError::AuthenticationFailed(_)), "{e:?}");
        }
    }

    let mut rng = rand::rng();
    for round in 0..200 {
        let mut bytes = vec![0u8; (round % 40) + 1];
        rng.fill_bytes(&mut bytes);
        for mechanism in MECHANISMS {
            let mut server = SaslServer::new(mechanism).unwrap();
            if let Err(e) = server.step(&users, &bytes).await {
                assert!(matches!(e, SaslError::AuthenticationFailed(_)), "{e:?}");
            }
        }
    }
}

#[tokio::test]
async fn plain_accepts_the_right_password_only() {
    let users = MapStore::default().with_user("alice", "pencil-42");
    for message in ["\0alice\0pencil-42", "alice\0alice\0pencil-42"] {
        let mut server = SaslServer::new("PLAIN").unwrap();
        assert_eq!(
            server.step(&users, message.as_bytes()).await.unwrap(),
            SaslStep::Done {
                principal: "alice".into(),
                response: Vec::new(),
            },
            "{message:?}"
        );
    }

    let mut server = SaslServer::new("PLAIN").unwrap();
    server.step(&users, b"\0alice\0pencil-42").await.unwrap();
    match server.step(&users, b"\0alice\0pencil-42").await {
        Err(e @ SaslError::IllegalState(_)) => assert_eq!(e.kafka_error_code(), 34),
        other => panic!("a finished PLAIN exchange took another message: {other:?}"),
    }

    let mut failures = Vec::new();
    for message in ["\0alice\0pencil-4", "\0ghost\0pencil-42"] {
        let mut server = SaslServer::new("PLAIN").unwrap();
        failures.push(auth_failure(server.step(&users, message.as_bytes()).await));
    }
    assert_eq!(
        failures[0], failures[1],
        "unknown user and wrong password differ"
    );

    for (message, why) in [
        ("bob\0alice\0pencil-42", "authorization id"),
        ("alice\0pencil-42", "3 NUL-separated fields"),
        ("\0alice\0pencil-42\0", "3 NUL-separated fields"),
        ("\0\0pencil-42", "username not specified"),
        ("\0alice\0", "password not specified"),
    ] {
        let mut server = SaslServer::new("PLAIN").unwrap();
        let got = auth_failure(server.step(&users, message.as_bytes()).await);
        assert!(got.contains(why), "{message:?}: {got}");
    }
    let mut server = SaslServer::new("PLAIN").unwrap();
    auth_failure(server.step(&users, b"\0alice\0\xff\xfe").await);
}

#[tokio::test]
async fn unsupported_mechanisms_are_refused_with_code_33() {
    for name in MECHANISMS {
        assert_eq!(SaslServer::new(name).unwrap().mechanism(), *name);
    }
    for name in ["GSSAPI", "OAUTHBEARER", "scram-sha-256", "SCRAM-SHA-1", ""] {
        match SaslServer::new(name) {
            Err(e @ SaslError::UnsupportedMechanism(_)) => assert_eq!(e.kafka_error_code(), 33),
            Err(e) => panic!("{name:?}: {e:?}"),
            Ok(_) => panic!("{name:?} was accepted"),
        }
    }
}

#[tokio::test]
async fn meta_outage_is_a_retriable_error_not_an_authentication_failure() {
    for (mechanism, message) in [
        ("PLAIN", &b"\0alice\0pw"[..]),
        (SHA256, b"n,,n=alice,r=abc"),
        (SHA512, b"n,,n=alice,r=abc"),
    ] {
        let mut server = SaslServer::new(mechanism).unwrap();
        match server.step(&DownStore, message).await {
            Err(e @ SaslError::Meta(_)) => assert_eq!(e.kafka_error_code(), 15),
            other => panic!("{mechanism}: expected a Meta error, got {other:?}"),
        }
    }
}
