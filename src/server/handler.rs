//! What a server does with requests: the [`Handler`] trait. Messages must be
//! answered; file operations are refused unless the embedding program says
//! otherwise, so a server written for messages cannot be made to accept or
//! serve files by a catch-all reply.

use crate::message::{Payload, Reply, Request};
use crate::status;

/// Answers a server's requests. A closure `Fn(Request) -> Reply` is a
/// handler for messages only; wrap it in [`ServeFiles`], or implement the
/// file methods, to let it decide file operations too.
pub trait Handler: Send + Sync + 'static {
    /// A text or data message ([`Payload::Text`], [`Payload::Data`]).
    fn message(&self, request: Request<'_>) -> Reply;

    /// An upload is offered ([`Payload::FileOffer`]), before any data flows,
    /// or a directory is to be created ([`Payload::MakeDir`]); anything but
    /// OK refuses it. By default: refused.
    fn file_offer(&self, _request: Request<'_>) -> Reply {
        Reply::new(status::UNSUPPORTED, "this server does not accept uploads")
    }

    /// An accepted upload arrived whole and verified and has its final name
    /// ([`Payload::FileReceived`]); the reply is the upload's answer. By
    /// default: OK, with an empty body.
    fn file_received(&self, _request: Request<'_>) -> Reply {
        Reply::ok("")
    }

    /// A download or a digest is asked for ([`Payload::FileRequest`]), or a
    /// page of a directory listing ([`Payload::Listing`]); anything but OK
    /// refuses it. By default: refused.
    fn file_request(&self, _request: Request<'_>) -> Reply {
        Reply::new(status::UNSUPPORTED, "this server does not serve files")
    }
}

impl<F: Fn(Request<'_>) -> Reply + Send + Sync + 'static> Handler for F {
    fn message(&self, request: Request<'_>) -> Reply {
        self(request)
    }
}

/// A closure that decides file operations as well as messages: every
/// [`Handler`] method calls it, with the request's [`Payload`] saying which.
#[derive(Debug, Clone)]
pub struct ServeFiles<F>(pub F);

impl<F: Fn(Request<'_>) -> Reply + Send + Sync + 'static> Handler for ServeFiles<F> {
    fn message(&self, request: Request<'_>) -> Reply {
        (self.0)(request)
    }
    fn file_offer(&self, request: Request<'_>) -> Reply {
        (self.0)(request)
    }
    fn file_received(&self, request: Request<'_>) -> Reply {
        (self.0)(request)
    }
    fn file_request(&self, request: Request<'_>) -> Reply {
        (self.0)(request)
    }
}

/// Route a request to the handler method its payload belongs to.
pub(crate) fn dispatch(handler: &dyn Handler, request: Request<'_>) -> Reply {
    match request.payload {
        Payload::Text(_) | Payload::Data(_) => handler.message(request),
        Payload::FileOffer { .. } | Payload::MakeDir { .. } => handler.file_offer(request),
        Payload::FileReceived { .. } => handler.file_received(request),
        Payload::FileRequest { .. } | Payload::Listing { .. } => handler.file_request(request),
    }
}
