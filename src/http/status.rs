//! Pre-encoded status lines, so a response head starts with one copy.

/// The full status line, `HTTP/1.1 200 OK\r\n`, for a status code.
pub(crate) fn status_line(code: u16) -> &'static [u8] {
    match code {
        100 => b"HTTP/1.1 100 Continue\r\n",
        101 => b"HTTP/1.1 101 Switching Protocols\r\n",
        200 => b"HTTP/1.1 200 OK\r\n",
        201 => b"HTTP/1.1 201 Created\r\n",
        202 => b"HTTP/1.1 202 Accepted\r\n",
        204 => b"HTTP/1.1 204 No Content\r\n",
        206 => b"HTTP/1.1 206 Partial Content\r\n",
        301 => b"HTTP/1.1 301 Moved Permanently\r\n",
        302 => b"HTTP/1.1 302 Found\r\n",
        303 => b"HTTP/1.1 303 See Other\r\n",
        304 => b"HTTP/1.1 304 Not Modified\r\n",
        307 => b"HTTP/1.1 307 Temporary Redirect\r\n",
        308 => b"HTTP/1.1 308 Permanent Redirect\r\n",
        400 => b"HTTP/1.1 400 Bad Request\r\n",
        401 => b"HTTP/1.1 401 Unauthorized\r\n",
        403 => b"HTTP/1.1 403 Forbidden\r\n",
        404 => b"HTTP/1.1 404 Not Found\r\n",
        405 => b"HTTP/1.1 405 Method Not Allowed\r\n",
        406 => b"HTTP/1.1 406 Not Acceptable\r\n",
        408 => b"HTTP/1.1 408 Request Timeout\r\n",
        409 => b"HTTP/1.1 409 Conflict\r\n",
        410 => b"HTTP/1.1 410 Gone\r\n",
        411 => b"HTTP/1.1 411 Length Required\r\n",
        412 => b"HTTP/1.1 412 Precondition Failed\r\n",
        413 => b"HTTP/1.1 413 Content Too Large\r\n",
        414 => b"HTTP/1.1 414 URI Too Long\r\n",
        415 => b"HTTP/1.1 415 Unsupported Media Type\r\n",
        417 => b"HTTP/1.1 417 Expectation Failed\r\n",
        422 => b"HTTP/1.1 422 Unprocessable Content\r\n",
        429 => b"HTTP/1.1 429 Too Many Requests\r\n",
        431 => b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        500 => b"HTTP/1.1 500 Internal Server Error\r\n",
        501 => b"HTTP/1.1 501 Not Implemented\r\n",
        502 => b"HTTP/1.1 502 Bad Gateway\r\n",
        503 => b"HTTP/1.1 503 Service Unavailable\r\n",
        504 => b"HTTP/1.1 504 Gateway Timeout\r\n",
        505 => b"HTTP/1.1 505 HTTP Version Not Supported\r\n",
        _ => b"",
    }
}

/// The reason phrase for a code, `""` when ringo has none on file.
pub(crate) fn reason(code: u16) -> &'static str {
    let line = status_line(code);
    if line.len() < 15 {
        return "";
    }
    // "HTTP/1.1 200 " is 13 bytes; the line ends with CRLF.
    std::str::from_utf8(&line[13..line.len() - 2]).unwrap_or("")
}

/// Whether a response with this status never has a body (RFC 9110 section 6.4.1).
pub(crate) const fn forbids_body(code: u16) -> bool {
    matches!(code, 100..=199 | 204 | 304)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_line_is_well_formed() {
        for code in 100..600u16 {
            let line = status_line(code);
            if line.is_empty() {
                continue;
            }
            let text = std::str::from_utf8(line).expect("ascii");
            assert!(text.starts_with(&format!("HTTP/1.1 {code} ")), "{text}");
            assert!(text.ends_with("\r\n"));
            assert!(!reason(code).is_empty());
        }
        assert_eq!(reason(404), "Not Found");
        assert_eq!(reason(299), "");
    }
}
