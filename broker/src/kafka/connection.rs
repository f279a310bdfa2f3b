//! One Kafka client connection: read a length-prefixed frame, decode it, authenticate
//! (SASL) when the listener requires it, dispatch, write the response. Requests are
//! answered one at a time in arrival order, as Kafka does, so pipelined requests get
//! their responses in order.
//!
//! A malformed frame, an oversized length or an unknown API closes this connection (with a
//! log line naming the peer) and nothing else.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};

use super::frame::{self, FrameError};
use super::handlers::{self, Conn, Reply};
use super::sasl::{MECHANISMS, SaslServer, SaslStep};
use super::versions;

/// Kafka closes connections idle this long (connections.max.idle.ms).
const IDLE: Duration = Duration::from_secs(600);
/// How long a connection stays open after a failed authentication
/// (connection.failed.authentication.delay.ms in Kafka).
const FAILED_AUTH_DELAY: Duration = Duration::from_millis(100);

#[derive(Debug, Error)]
enum ConnError {
    #[error("frame length {0} is negative or over the limit of {1} bytes")]
    FrameSize(i32, usize),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("{0:?} before SASL authentication")]
    Unauthenticated(ApiKey),
    #[error("SASL authentication failed: {0}")]
    Sasl(String),
    #[error("idle for {0:?}")]
    Idle(Duration),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Where the SASL exchange stands.
enum Auth {
    /// The listener needs none, or it is done.
    Done,
    /// Waiting for SaslHandshake.
    Required,
    /// Handshake v1 done: tokens arrive in SaslAuthenticate requests.
    Framed(SaslServer),
    /// Handshake v0 done: tokens arrive as bare length-prefixed frames.
    Raw(SaslServer),
}

async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Bytes>, ConnError> {
    let mut len = [0u8; 4];
    match tokio::time::timeout(IDLE, r.read_exact(&mut len)).await {
        Err(_) => return Err(ConnError::Idle(IDLE)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Ok(r) => r?,
    };
    let n = i32::from_be_bytes(len);
    if n < 0 || n as usize > max {
        return Err(ConnError::FrameSize(n, max));
    }
    let mut buf = BytesMut::zeroed(n as usize);
    r.read_exact(&mut buf).await?;
    Ok(Some(buf.freeze()))
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> std::io::Result<()> {
    w.write_all(frame).await?;
    w.flush().await
}

/// Serves one connection until it closes, errs or the broker shuts down.
pub async fn serve<S>(stream: S, conn: Conn, require_auth: bool)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let peer = conn.peer;
    let cancel = conn.ctx.cancel.clone();
    let (rd, wr) = tokio::io::split(stream);
    let mut rd = tokio::io::BufReader::with_capacity(64 * 1024, rd);
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    let mut auth = if require_auth {
        Auth::Required
    } else {
        Auth::Done
    };
    let result = tokio::select! {
        r = run(&conn, &mut rd, &mut wr, &mut auth) => r,
        _ = cancel.cancelled() => Ok(()),
    };
    match result {
        Ok(()) => tracing::debug!(%peer, "kafka connection closed"),
        Err(ConnError::Io(e)) => tracing::debug!(%peer, error = %e, "kafka connection dropped"),
        Err(e) => {
            if matches!(e, ConnError::FrameSize(..) | ConnError::Frame(_)) {
                conn.ctx.stats.refused();
            }
            tracing::warn!(%peer, error = %e, "closing kafka connection")
        }
    }
    let _ = wr.shutdown().await;
}

async fn run<R, W>(conn: &Conn, rd: &mut R, wr: &mut W, auth: &mut Auth) -> Result<(), ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let max = conn.ctx.settings.max_request_size;
    while let Some(raw) = read_frame(rd, max).await? {
        if let Auth::Raw(server) = auth {
            // Handshake v0: this frame is a bare SASL token, answered with a bare token.
            match server.step(conn.ctx.users.as_ref(), &raw).await {
                Ok(SaslStep::Challenge(c)) => write_raw(wr, &c).await?,
                Ok(SaslStep::Done {
                    principal,
                    response,
                }) => {
                    tracing::debug!(peer = %conn.peer, %principal, "SASL authenticated");
                    write_raw(wr, &response).await?;
                    *auth = Auth::Done;
                }
                Err(e) => {
                    linger(rd, FAILED_AUTH_DELAY).await;
                    return Err(ConnError::Sasl(e.to_string()));
                }
            }
            continue;
        }
        let req = match frame::decode_request(raw) {
            Ok(r) => r,
            Err(FrameError::Unsupported {
                api_key: ApiKey::ApiVersions,
                correlation_id,
                ..
            }) => {
                // Clients probe with their newest version; the answer is a v0 body
                // listing ours, with UNSUPPORTED_VERSION, and they retry.
                let body = ResponseKind::ApiVersions(versions::api_versions(
                    ResponseError::UnsupportedVersion.code(),
                ));
                let f = frame::encode_response(ApiKey::ApiVersions, 0, correlation_id, &body)?;
                write_frame(wr, &f).await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let (api, version, corr) = (req.api_key, req.version(), req.header.correlation_id);
        let started = std::time::Instant::now();
        let client_id = req.header.client_id.clone();
        let reply = match (req.body, &mut *auth) {
            (RequestKind::SaslHandshake(h), _) => {
                let (resp, next) = handshake(h.mechanism.as_str(), version);
                if let Some(next) = next {
                    *auth = next;
                }
                Reply::Response(Box::new(ResponseKind::SaslHandshake(resp)))
            }
            (RequestKind::SaslAuthenticate(a), Auth::Framed(server)) => {
                let mut resp = SaslAuthenticateResponse::default();
                match server.step(conn.ctx.users.as_ref(), &a.auth_bytes).await {
                    Ok(SaslStep::Challenge(c)) => resp.auth_bytes = c.into(),
                    Ok(SaslStep::Done {
                        principal,
                        response,
                    }) => {
                        tracing::debug!(peer = %conn.peer, %principal, "SASL authenticated");
                        resp.auth_bytes = response.into();
                        *auth = Auth::Done;
                    }
                    Err(e) => {
                        tracing::info!(peer = %conn.peer, error = %e, "SASL authentication failed");
                        resp.error_code = e.kafka_error_code();
                        resp.error_message = Some(StrBytes::from_string(e.to_string()));
                    }
                }
                let failed = resp.error_code != 0;
                let f = frame::encode_response(
                    api,
                    version,
                    corr,
                    &ResponseKind::SaslAuthenticate(resp),
                )?;
                write_frame(wr, &f).await?;
                if failed {
                    // Close after a failed authentication, as Kafka does, but not at once:
                    // closing with unread bytes from the client makes the kernel send a
                    // reset, which can destroy the error response before the client reads
                    // it. Drain for a moment (Kafka delays 100 ms too), then close.
                    linger(rd, FAILED_AUTH_DELAY).await;
                    return Ok(());
                }
                continue;
            }
            (RequestKind::SaslAuthenticate(_), _) => {
                let resp = SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::IllegalSaslState.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "SaslAuthenticate without a SaslHandshake",
                    )));
                Reply::Response(Box::new(ResponseKind::SaslAuthenticate(resp)))
            }
            (RequestKind::ApiVersions(_), _) => Reply::Response(Box::new(
                ResponseKind::ApiVersions(versions::api_versions(0)),
            )),
            (_, Auth::Required | Auth::Framed(_) | Auth::Raw(_)) => {
                return Err(ConnError::Unauthenticated(api));
            }
            (body, Auth::Done) => {
                handlers::dispatch(conn, client_id.as_deref(), body, version).await
            }
        };
        match reply {
            Reply::Response(body) => {
                let f = frame::encode_response(api, version, corr, &body)?;
                write_frame(wr, &f).await?;
            }
            Reply::Nothing => {}
            Reply::Close => return Ok(()),
        }
        conn.ctx.stats.request(api, started.elapsed());
    }
    Ok(())
}

/// Reads and discards whatever the client still sends, for at most `max` or until it
/// closes.
async fn linger<R: AsyncRead + Unpin>(r: &mut R, max: Duration) {
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(max, async {
        while let Ok(n) = r.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

async fn write_raw<W: AsyncWrite + Unpin>(w: &mut W, token: &[u8]) -> std::io::Result<()> {
    w.write_all(&(token.len() as i32).to_be_bytes()).await?;
    write_frame(w, token).await
}

/// Answers SaslHandshake and says how the exchange continues.
fn handshake(mechanism: &str, version: i16) -> (SaslHandshakeResponse, Option<Auth>) {
    let mechanisms = MECHANISMS
        .iter()
        .map(|m| StrBytes::from_static_str(m))
        .collect();
    let resp = SaslHandshakeResponse::default().with_mechanisms(mechanisms);
    match SaslServer::new(mechanism) {
        Ok(server) if version == 0 => (resp, Some(Auth::Raw(server))),
        Ok(server) => (resp, Some(Auth::Framed(server))),
        Err(e) => (resp.with_error_code(e.kafka_error_code()), None),
    }
}
