//! Blob transfers on a request stream: resumable upload and download.

use bytes::Bytes;
use tern_protocol::limits::MAX_BLOB_CHUNK_LEN;
use tern_protocol::wire::{
    BlobChunk, BlobDownload, BlobUploadStart, ClientFrame, client_frame, request, response,
    server_frame,
};
use tern_protocol::{ProtocolError, decode_server_frame};
use tern_transport::{read_frame, write_frame};

use super::connection::RelayConnection;
use super::error::NetError;

async fn next_body(recv: &mut quinn::RecvStream) -> Result<Option<server_frame::Body>, NetError> {
    let Some(body) = read_frame(recv).await? else {
        return Ok(None);
    };
    Ok(decode_server_frame(body)?.body)
}

fn answer(body: Option<server_frame::Body>) -> Result<response::Kind, NetError> {
    match body {
        Some(server_frame::Body::Response(r)) => match r.kind {
            Some(response::Kind::Error(e)) => Err(e.into()),
            Some(kind) => Ok(kind),
            None => Err(ProtocolError::MissingField("Response.kind").into()),
        },
        Some(_) => Err(ProtocolError::Unexpected {
            expected: "Response",
        }
        .into()),
        None => Err(NetError::NoResponse),
    }
}

fn status(kind: response::Kind) -> Result<(u64, bool), NetError> {
    match kind {
        response::Kind::BlobUploadStatus(s) => Ok((s.received, s.complete)),
        _ => Err(ProtocolError::Unexpected {
            expected: "BlobUploadStatus",
        }
        .into()),
    }
}

impl RelayConnection {
    /// Uploads the blob with SHA-256 `sha256` and `size` bytes, resuming from
    /// what the relay already holds. `chunk_at(offset, max)` supplies up to
    /// `max` bytes of the blob starting at `offset` (never empty before the end).
    /// When it fails, the stream is finished and the relay's answer awaited
    /// (it keeps what it received, the next upload resumes there) before its
    /// error is returned.
    pub async fn upload_blob(
        &self,
        sha256: [u8; 32],
        size: u64,
        mut chunk_at: impl FnMut(u64, usize) -> Result<Vec<u8>, NetError>,
    ) -> Result<(), NetError> {
        let start = BlobUploadStart {
            sha256: Bytes::copy_from_slice(&sha256),
            size,
        };
        let (mut send, mut recv) = self
            .open_request(request::Kind::BlobUploadStart(start))
            .await?;
        let (mut offset, complete) = status(answer(next_body(&mut recv).await?)?)?;
        if complete {
            return Ok(());
        }
        while offset < size {
            let data = match chunk_at(offset, MAX_BLOB_CHUNK_LEN) {
                Ok(data) => data,
                Err(e) => {
                    send.finish().map_err(|_| NetError::NoResponse)?;
                    let _ = next_body(&mut recv).await;
                    return Err(e);
                }
            };
            if data.is_empty() {
                return Err(NetError::Connect("blob source ended early".into()));
            }
            let len = data.len() as u64;
            let frame = ClientFrame {
                body: Some(client_frame::Body::BlobChunk(BlobChunk {
                    offset,
                    data: data.into(),
                })),
            };
            write_frame(&mut send, &frame).await?;
            offset += len;
        }
        send.finish().map_err(|_| NetError::NoResponse)?;
        match status(answer(next_body(&mut recv).await?)?)? {
            (_, true) => Ok(()),
            _ => Err(NetError::NoResponse),
        }
    }

    /// Downloads a blob from `offset`; `sink(offset, data)` receives the
    /// chunks in order. Returns the blob's total size.
    pub async fn download_blob(
        &self,
        blob_id: [u8; 32],
        offset: u64,
        mut sink: impl FnMut(u64, &[u8]) -> Result<(), NetError>,
    ) -> Result<u64, NetError> {
        let request = BlobDownload {
            blob_id: Bytes::copy_from_slice(&blob_id),
            offset,
        };
        let (mut send, mut recv) = self
            .open_request(request::Kind::BlobDownload(request))
            .await?;
        send.finish().map_err(|_| NetError::NoResponse)?;
        let size = match answer(next_body(&mut recv).await?)? {
            response::Kind::BlobInfo(info) => info.size,
            _ => {
                return Err(ProtocolError::Unexpected {
                    expected: "BlobInfo",
                }
                .into());
            }
        };
        let mut expected = offset;
        while let Some(body) = next_body(&mut recv).await? {
            let server_frame::Body::BlobChunk(chunk) = body else {
                return Err(ProtocolError::Unexpected {
                    expected: "BlobChunk",
                }
                .into());
            };
            let end = chunk.offset.saturating_add(chunk.data.len() as u64);
            if chunk.offset != expected || end > size {
                return Err(ProtocolError::Unexpected {
                    expected: "the next contiguous BlobChunk",
                }
                .into());
            }
            sink(chunk.offset, &chunk.data)?;
            expected = end;
        }
        if expected != size {
            return Err(NetError::NoResponse);
        }
        Ok(size)
    }
}
