//! The frames that carry requests and responses, built in one place so
//! that every client and the relay put `request_id` where it belongs.

use crate::wire::{
    ClientFrame, Request, Response, ServerFrame, client_frame, request, response, server_frame,
};

impl ClientFrame {
    /// A request frame; `request_id` is echoed in its response (0 when the
    /// stream carries only this request).
    pub fn request(kind: request::Kind, request_id: u64) -> Self {
        Self {
            body: Some(client_frame::Body::Request(Request {
                kind: Some(kind),
                request_id,
            })),
        }
    }
}

impl ServerFrame {
    /// A response frame answering the request with `request_id`.
    pub fn response(kind: response::Kind, request_id: u64) -> Self {
        Self {
            body: Some(server_frame::Body::Response(Response {
                kind: Some(kind),
                request_id,
            })),
        }
    }
}
