//! The HTTP/1.1 wire protocol: request heads, bodies, responses, limits and the date cache.
//!
//! This module owns bytes-in/bytes-out rules (RFC 9110/9112). It never touches sockets,
//! the router or handlers: the connection engine in `server::conn` feeds it buffers and
//! takes back parsed heads, decoded bodies and encoded responses.

pub(crate) mod chars;
pub(crate) mod chunked;
pub(crate) mod date;
pub(crate) mod error;
pub(crate) mod field;
pub(crate) mod limits;
pub(crate) mod method;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod scan;
pub(crate) mod status;
pub(crate) mod words;

pub use error::HttpError;
pub use limits::Limits;
pub use method::Method;
