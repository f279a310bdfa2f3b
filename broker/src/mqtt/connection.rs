//! [`Connection`]: the only code that touches bytes. Frames packets with mqtt-codec over
//! any byte stream (TCP now; TLS and WebSocket wrap the same trait later).
//!
//! Partial reads stay in the connection's own buffer, so [`Connection::read_packet`] is
//! cancel-safe and can sit in a `select!`. The declared size of a packet is checked
//! against the limit before its body is buffered (mqtt-codec does it from the fixed
//! header).

use bytes::BytesMut;
use mqtt_codec::{DecodeError, Packet, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A byte stream a client connects over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// Why reading a packet stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("peer closed the connection")]
    Closed,
    #[error("malformed packet: {0}")]
    Decode(#[from] DecodeError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

pub struct Connection {
    stream: Box<dyn Stream>,
    read_buf: BytesMut,
    write_buf: BytesMut,
    pub version: ProtocolVersion,
    /// Largest packet we accept.
    pub max_in: u32,
}

impl Connection {
    pub fn new(stream: Box<dyn Stream>, max_in: u32) -> Self {
        Connection {
            stream,
            read_buf: BytesMut::with_capacity(4096),
            write_buf: BytesMut::with_capacity(4096),
            // Until CONNECT: V5 accepts every packet type, and CONNECT names its own.
            version: ProtocolVersion::V5,
            max_in,
        }
    }

    /// The raw bytes buffered but not yet decoded (to peek at a CONNECT's version).
    pub fn buffered(&self) -> &[u8] {
        &self.read_buf
    }

    /// Reads the next whole packet. Cancel-safe.
    pub async fn read_packet(&mut self) -> Result<Packet, ReadError> {
        loop {
            if let Some(p) = mqtt_codec::decode(&mut self.read_buf, self.version, self.max_in)? {
                return Ok(p);
            }
            if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                return Err(ReadError::Closed);
            }
        }
    }

    /// Decodes a packet from what is buffered, without reading.
    pub fn try_decode(&mut self) -> Result<Option<Packet>, DecodeError> {
        mqtt_codec::decode(&mut self.read_buf, self.version, self.max_in)
    }

    /// Reads more bytes without decoding; used to peek at a CONNECT before it decodes.
    pub async fn fill(&mut self) -> Result<(), ReadError> {
        if self.stream.read_buf(&mut self.read_buf).await? == 0 {
            return Err(ReadError::Closed);
        }
        Ok(())
    }

    /// Queues a packet in the write buffer (no I/O). Encoding errors (a packet our own
    /// code built wrongly) are logged and the packet dropped rather than sent half-built.
    pub fn queue(&mut self, packet: &Packet) {
        let before = self.write_buf.len();
        if let Err(e) = packet.encode(self.version, &mut self.write_buf) {
            self.write_buf.truncate(before);
            tracing::error!(error = %e, packet = ?packet.packet_type(), "cannot encode packet");
        }
    }

    /// Writes out everything queued.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        self.stream.write_all(&self.write_buf).await?;
        self.write_buf.clear();
        self.stream.flush().await
    }

    pub fn has_queued(&self) -> bool {
        !self.write_buf.is_empty()
    }

    /// Queues and writes one packet.
    pub async fn send(&mut self, packet: &Packet) -> std::io::Result<()> {
        self.queue(packet);
        self.flush().await
    }

    /// Flushes and closes the write side.
    pub async fn shutdown(&mut self) {
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}
