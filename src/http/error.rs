//! The small, `Copy` error type for protocol violations and limit breaches.
//!
//! Every variant maps to exactly one status code and a short reason; the connection
//! engine answers with that status, `Connection: close`, and closes. "Need more bytes"
//! is never an error: parsers return `Parse::Partial` for that.

/// Why a request could not be accepted. Each variant has one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The request head is not valid HTTP/1.x syntax.
    #[error("malformed request head")]
    Malformed,
    /// The request line (method, target, version) exceeds `limits.max_request_line`.
    #[error("request line too long")]
    UriTooLong,
    /// The header block exceeds `limits.max_header_bytes`.
    #[error("header block too large")]
    HeadersTooLarge,
    /// More header fields than `limits.max_headers`.
    #[error("too many header fields")]
    TooManyHeaders,
    /// A header line used obsolete line folding (obs-fold).
    #[error("obsolete line folding in header")]
    ObsFold,
    /// The request head has an LF not preceded by CR, or a CR not followed by LF.
    #[error("bare CR or LF in request head")]
    BareLineEnding,
    /// Both `Content-Length` and `Transfer-Encoding` were sent.
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthAndTransferEncoding,
    /// `Content-Length` is not a plain decimal number.
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// Several `Content-Length` fields with different values.
    #[error("conflicting Content-Length fields")]
    ConflictingContentLength,
    /// `Transfer-Encoding` where `chunked` is missing, repeated or not last.
    #[error("invalid Transfer-Encoding")]
    InvalidTransferEncoding,
    /// A transfer coding other than `chunked` (gzip, deflate, …) that ringo does not decode.
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,
    /// `Transfer-Encoding` on an HTTP/1.0 request.
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    TransferEncodingInHttp10,
    /// An HTTP/1.1 request without a `Host` field.
    #[error("missing Host header")]
    MissingHost,
    /// More than one `Host` field.
    #[error("duplicate Host header")]
    DuplicateHost,
    /// A `Host` value that is not `uri-host [ ":" port ]` (or a port over 65535).
    #[error("invalid Host header")]
    InvalidHost,
    /// The chunked body framing is invalid.
    #[error("malformed chunked body")]
    MalformedChunk,
    /// The body exceeds `limits.max_body_bytes`.
    #[error("request body too large")]
    BodyTooLarge,
    /// A body-carrying method arrived with neither `Content-Length` nor `Transfer-Encoding`.
    #[error("length required")]
    LengthRequired,
    /// The request target is not origin-form, absolute-form with a valid authority, or
    /// `*` for OPTIONS; or its path has a `%` not followed by two hex digits.
    #[error("invalid request target")]
    InvalidTarget,
    /// A method token ringo does not implement.
    #[error("method not implemented")]
    MethodNotImplemented,
    /// A protocol version other than HTTP/1.0 and HTTP/1.1.
    #[error("HTTP version not supported")]
    VersionNotSupported,
    /// The head, or the body, did not arrive within its timeout. (Keep it the last
    /// variant: `ALL`'s completeness test counts on it.)
    #[error("request timeout")]
    Timeout,
}

impl HttpError {
    /// Every variant, in declaration order: `ALL[e.index()] == e`. The one list that
    /// metrics (a counter per kind) and tests derive theirs from.
    pub(crate) const ALL: [HttpError; 22] = [
        HttpError::Malformed,
        HttpError::UriTooLong,
        HttpError::HeadersTooLarge,
        HttpError::TooManyHeaders,
        HttpError::ObsFold,
        HttpError::BareLineEnding,
        HttpError::ContentLengthAndTransferEncoding,
        HttpError::InvalidContentLength,
        HttpError::ConflictingContentLength,
        HttpError::InvalidTransferEncoding,
        HttpError::UnsupportedTransferCoding,
        HttpError::TransferEncodingInHttp10,
        HttpError::MissingHost,
        HttpError::DuplicateHost,
        HttpError::InvalidHost,
        HttpError::MalformedChunk,
        HttpError::BodyTooLarge,
        HttpError::LengthRequired,
        HttpError::InvalidTarget,
        HttpError::MethodNotImplemented,
        HttpError::VersionNotSupported,
        HttpError::Timeout,
    ];

    /// This variant's position in [`ALL`](HttpError::ALL).
    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    /// The status code this error is answered with.
    pub const fn status(self) -> u16 {
        match self {
            HttpError::Malformed
            | HttpError::ObsFold
            | HttpError::BareLineEnding
            | HttpError::ContentLengthAndTransferEncoding
            | HttpError::InvalidContentLength
            | HttpError::ConflictingContentLength
            | HttpError::InvalidTransferEncoding
            | HttpError::TransferEncodingInHttp10
            | HttpError::MissingHost
            | HttpError::DuplicateHost
            | HttpError::InvalidHost
            | HttpError::MalformedChunk
            | HttpError::InvalidTarget => 400,
            HttpError::Timeout => 408,
            HttpError::LengthRequired => 411,
            HttpError::BodyTooLarge => 413,
            HttpError::UriTooLong => 414,
            HttpError::HeadersTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::UnsupportedTransferCoding | HttpError::MethodNotImplemented => 501,
            HttpError::VersionNotSupported => 505,
        }
    }

    /// A stable snake_case name, used as a metric label and in debug logs.
    pub const fn kind(self) -> &'static str {
        match self {
            HttpError::Malformed => "malformed",
            HttpError::UriTooLong => "uri_too_long",
            HttpError::HeadersTooLarge => "headers_too_large",
            HttpError::TooManyHeaders => "too_many_headers",
            HttpError::ObsFold => "obs_fold",
            HttpError::BareLineEnding => "bare_line_ending",
            HttpError::ContentLengthAndTransferEncoding => "cl_and_te",
            HttpError::InvalidContentLength => "invalid_content_length",
            HttpError::ConflictingContentLength => "conflicting_content_length",
            HttpError::InvalidTransferEncoding => "invalid_transfer_encoding",
            HttpError::UnsupportedTransferCoding => "unsupported_transfer_coding",
            HttpError::TransferEncodingInHttp10 => "te_in_http10",
            HttpError::MissingHost => "missing_host",
            HttpError::DuplicateHost => "duplicate_host",
            HttpError::InvalidHost => "invalid_host",
            HttpError::MalformedChunk => "malformed_chunk",
            HttpError::BodyTooLarge => "body_too_large",
            HttpError::LengthRequired => "length_required",
            HttpError::InvalidTarget => "invalid_target",
            HttpError::MethodNotImplemented => "method_not_implemented",
            HttpError::VersionNotSupported => "version_not_supported",
            HttpError::Timeout => "timeout",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_variant_at_its_index() {
        for (i, e) in HttpError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i, "{e:?}");
        }
        // A variant added before `Timeout` but left out of `ALL` shifts its index.
        assert_eq!(HttpError::Timeout.index() + 1, HttpError::ALL.len(), "a variant is missing from ALL");
    }
}
