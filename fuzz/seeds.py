#!/usr/bin/env python3
"""Writes the hand-written seed corpora under fuzz/corpus/<target>/.

The seeds are committed; this script is how they were made and how to remake them
(`python3 fuzz/seeds.py`). Each seed's file name says what it is. The conn seeds start
with the target's header bytes (see ringo::fuzz_api::conn): flags, chunk-size seed, cut
points; the other targets take plain text.
"""

import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
H = b"Host: f\r\n"
GET = b"GET /plaintext HTTP/1.1\r\n" + H + b"\r\n"


def conn_input(mode, payload, cuts=(), pause=False, seed=0, ext=False, trailer=False):
    flags = mode | (4 if pause else 0) | (len(cuts) << 3) | (0x40 if ext else 0) | (0x80 if trailer else 0)
    assert len(cuts) <= 7
    return bytes([flags, seed]) + b"".join(struct.pack("<H", c) for c in cuts) + payload


def raw(stream, cuts=(), pause=False):
    return conn_input(0, stream, cuts, pause)


def post(path, body, extra=b""):
    return b"POST " + path + b" HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n" % len(body) + extra + b"\r\n" + body


CHUNKED_HEAD = b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"

CONN = {
    # Pipelining and keep-alive.
    "pipelined-gets": raw(GET * 3, cuts=(10, 40)),
    "pipelined-byte-cuts": raw(GET * 2, cuts=(1, 2, 3, 17, 18, 19, 20), pause=True),
    "head-then-get": raw(b"HEAD /plaintext HTTP/1.1\r\n" + H + b"\r\n" + GET),
    "http10-keep-alive": raw(b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2),
    "http10-close": raw(b"GET /plaintext HTTP/1.0\r\n\r\n" + GET),
    "connection-close-then-get": raw(b"GET /plaintext HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n" + GET),
    "leading-empty-line": raw(b"\r\n" + GET),
    "absolute-form": raw(b"GET http://f/plaintext HTTP/1.1\r\n" + H + b"\r\n"),
    "options-star": raw(b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n"),
    # Bodies.
    "cl-echo-then-get": raw(post(b"/echo", b"hello") + GET, cuts=(30, 60)),
    "cl-zero": raw(post(b"/echo", b"") + GET),
    "cl-body-is-a-request": raw(post(b"/echo", GET) + GET),
    "expect-continue": raw(post(b"/echo", b"0123456789", b"Expect: 100-continue\r\n"), cuts=(74,), pause=True),
    "chunked-echo": raw(CHUNKED_HEAD + b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n" + GET),
    "chunked-ext-trailer": raw(
        CHUNKED_HEAD + b"4;a=b;q=\"x y\"\r\nWiki\r\n0;end\r\nX-Trailer: 1\r\n\r\n" + GET, cuts=(70, 75), pause=True
    ),
    "chunked-upper-hex": raw(CHUNKED_HEAD + b"A\r\n0123456789\r\n000\r\n\r\n" + GET),
    "put-echo": raw(b"PUT /echo HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc"),
    "json-body": raw(post(b"/api/json", b'{"a":[1,2,{"b":null}]}') + post(b"/api/json", b"{nope")),
    # Routing through the engine.
    "params": raw(
        b"GET /users/caf%C3%A9 HTTP/1.1\r\n" + H + b"\r\n"
        b"POST /users/1/items/%2F HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n"
        b"GET /n/123 HTTP/1.1\r\n" + H + b"\r\n"
        b"GET /n/abc HTTP/1.1\r\n" + H + b"\r\n"
        b"GET /files/a/b/c HTTP/1.1\r\n" + H + b"\r\n"
    ),
    "param-not-utf8": raw(b"GET /users/%ff HTTP/1.1\r\n" + H + b"\r\nHEAD /users/%ff HTTP/1.1\r\n" + H + b"\r\n"),
    "query": raw(b"GET /api/q?q=a+b%20c&q=2 HTTP/1.1\r\n" + H + b"\r\n"),
    "redirects": raw(b"GET /plaintext/ HTTP/1.1\r\n" + H + b"\r\n" + post(b"/echo/", b"x")),
    "not-allowed": raw(b"POST /plaintext HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\nHEAD /echo HTTP/1.1\r\n" + H + b"\r\n"),
    "not-found": raw(b"GET /nope HTTP/1.1\r\n" + H + b"\r\n" + GET),
    "stream": raw(b"GET /stream HTTP/1.1\r\n" + H + b"\r\nHEAD /stream HTTP/1.1\r\n" + H + b"\r\n" + GET),
    "stream-http10": raw(b"GET /stream HTTP/1.0\r\n\r\n"),
    # Smuggling attempts and protocol errors: each must be answered once, then closed.
    "cl-and-te": raw(
        b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + GET
    ),
    "te-gzip-chunked": raw(b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    "te-chunked-gzip": raw(b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
    "te-chunked-twice": raw(b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "te-http10": raw(b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "cl-conflict": raw(b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd" + GET),
    "cl-list": raw(b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 3, 3\r\n\r\nabc" + GET),
    "cl-plus": raw(b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc" + GET),
    "cl-too-large": raw(b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5000\r\n\r\n" + GET),
    "cl-overflow": raw(b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\n"),
    "chunked-bare-lf": raw(CHUNKED_HEAD + b"3\nabc\r\n0\r\n\r\n" + GET),
    "chunked-0x-size": raw(CHUNKED_HEAD + b"0x3\r\nabc\r\n0\r\n\r\n" + GET),
    "chunked-huge-size": raw(CHUNKED_HEAD + b"ffffffffffffffff\r\nabc" + GET),
    "chunked-size-space": raw(CHUNKED_HEAD + b"3 \r\nabc\r\n0\r\n\r\n" + GET),
    "chunked-ext-lf": raw(CHUNKED_HEAD + b"3;a\nb\r\nabc\r\n0\r\n\r\n" + GET),
    "chunked-data-overrun": raw(CHUNKED_HEAD + b"3\r\nabcGET / HTTP/1.1\r\n\r\n0\r\n\r\n"),
    "chunked-trailer-no-colon": raw(CHUNKED_HEAD + b"0\r\nnot a field\r\n\r\n" + GET),
    "chunked-no-final-crlf": raw(CHUNKED_HEAD + b"0\r\n" + GET),
    "obs-fold": raw(b"GET /plaintext HTTP/1.1\r\n" + H + b"X-A: 1\r\n  folded\r\n\r\n" + GET),
    "missing-host": raw(b"GET /plaintext HTTP/1.1\r\n\r\n" + GET),
    "duplicate-host": raw(b"GET /plaintext HTTP/1.1\r\n" + H + H + b"\r\n" + GET),
    "space-before-colon": raw(b"GET /plaintext HTTP/1.1\r\nHost : f\r\n\r\n" + GET),
    "bare-lf-head": raw(b"GET /plaintext HTTP/1.1\nHost: f\n\n" + GET),
    "no-length": raw(b"POST /echo HTTP/1.1\r\n" + H + b"\r\n" + GET),
    "unknown-method": raw(b"BREW /plaintext HTTP/1.1\r\n" + H + b"\r\n" + GET),
    "http2-version": raw(b"GET /plaintext HTTP/2.0\r\n" + H + b"\r\n"),
    "bad-target": raw(b"GET plaintext HTTP/1.1\r\n" + H + b"\r\n"),
    "long-request-line": raw(b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n" + H + b"\r\n"),
    "many-headers": raw(b"GET /plaintext HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(20)) + b"\r\n"),
    "nul-in-header": raw(b"GET /plaintext HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n"),
    "garbage": raw(b"\x00\x01\x02\xff\r\n\r\n"),
    "truncated-head": raw(b"GET /plaintext HTTP/1.1\r\nHo"),
    "truncated-body": raw(post(b"/echo", b"0123456789")[:-4]),
    # Framed modes: the run knows the exact answers.
    "framed-cl": conn_input(1, b"hello world", cuts=(20, 50)),
    "framed-cl-request-in-body": conn_input(1, GET * 2, cuts=(60,), pause=True),
    "framed-cl-empty": conn_input(1, b""),
    "framed-cl-too-large": conn_input(1, b"x" * 2100),
    "framed-chunked": conn_input(2, b"The quick brown fox jumps over the lazy dog", seed=4, cuts=(70, 71, 72)),
    "framed-chunked-ext-trailer": conn_input(2, b"\r\n0\r\n\r\n" * 5, seed=9, ext=True, trailer=True, cuts=(80,)),
    "framed-chunked-upper-hex": conn_input(2, bytes(range(256)), seed=1, ext=True, pause=True, cuts=(100, 200)),
}

GITHUB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benches", "data", "github-routes.txt")


def github_routes():
    letters = {"GET": "G", "POST": "P", "PUT": "U", "DELETE": "D", "PATCH": "A", "HEAD": "H", "OPTIONS": "O"}
    lines = []
    with open(GITHUB) as f:
        for line in f:
            method, path = line.split()
            lines.append(letters[method] + path)
    lookups = ["g/authorizations/1", "g/repos/a/b/issues/1", "p/authorizations", "h/user", "g/users/x/repos/"]
    return ("\n".join(lines[:80] + lookups) + "\n").encode()


ROUTER = {
    "priority": b"G/users/new\nG/users/:id\nG/users/:id/edit\nG/static/*path\ng/users/new\ng/users/42\ng/users/new/edit\ng/static/\ng/static/a/b\n",
    "regex": b"G/n/:id<[0-9]+>\nG/n/:id<[a-z]+>\nG/n/:id\ng/n/12\ng/n/ab\ng/n/A1\n",
    "conflicts": b"G/u/:id\nG/u/:name/x\nG/u/:id\nG/s/*a\nG/s/*b\nG/r/:x<\\d+>\nG/r/:y<\\d+>\ng/u/1\n",
    "invalid": b"Gusers\nG/:\nG/a:b\nG/*x/y\nG/:x<\nG/:x<>\nG/:x<(>\nG/:a/:a\nG/:x<a>b\nG/*\n",
    "groups": b"G/api /users\nG/api /\nG/api/ /:id\nP/api/v2 /x\ng/api\ng/api/\ng/api/users\ng/api/7\np/api/v2/x\n",
    "methods": b"G/a\nP/b\nU/b\nH/h\nh/a\nh/b\np/a\nd/b\no/x\nc/a\nt/a\n",
    "redirects": b"G/a/\nG/b\nP/c/\ng/a\ng/b/\np/c\nc/a\ng/\n",
    "catch-all-root": b"G/*all\nG/x\ng/\ng/x\ng/x/y\ng\ng//\n",
    "raw-bytes": b"G/%2F/:p\ng/%2F/%ff\ng/\xff\xfe\ng/a?b\n",
    "github": github_routes(),
}

DECODE = {
    "pairs": b"a=1&b=2&a=3",
    "plus-and-percent": b"q=a+b%20c&%71=x&k=%2B",
    "malformed-escapes": b"k=%zz&j=%4&i=%&%=%%",
    "not-utf8": b"x=%ff&y=%C3%A9&z=%E2%82",
    "params": b"caf%C3%A9/%2F/plain/%E9/",
    "empty-pairs": b"&&==&=v&k",
    "utf8-raw": "é=ü&€=1".encode(),
    "binary": b"\x00\xff\x80/%00",
}

CHUNKED = {
    "valid-simple": b"3\r\nabc\r\n0\r\n\r\n",
    "valid-multi": b"4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n",
    "valid-ext": b"4;name=val\r\nWiki\r\n0;last\r\n\r\n",
    "valid-ext-bws-quoted": b"4 ; a = \"q \\\" x\" ;b\r\nWiki\r\n0\r\n\r\n",
    "valid-trailers": b"1\r\nx\r\n0\r\nX-Trailer: 1\r\nY:\t two words \r\n\r\nNEXT",
    "valid-leading-zeros": b"0003\r\nabc\r\n000\r\n\r\n",
    "valid-then-next-request": b"0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    "need-more": b"5\r\nab",
    "bare-lf-size": b"3\nabc\r\n0\r\n\r\n",
    "bare-lf-data": b"3\r\nabc\n0\r\n\r\n",
    "data-overrun": b"3\r\nabcX\r\n0\r\n\r\n",
    "seventeen-digits": b"11111111111111111\r\n",
    "negative": b"-1\r\n",
    "leading-space": b" 3\r\nabc\r\n0\r\n\r\n",
    "ctl-in-ext": b"3;\x01\r\nabc\r\n0\r\n\r\n",
    "too-large": b"100001\r\n",
    "trailer-bare-lf": b"0\r\nX: 1\n\r\n",
    # Lenient today, invalid under RFC 9112's grammar (the strict reference refuses):
    "size-trailing-space": b"3 \r\nabc\r\n0\r\n\r\n",
    "ext-empty-name": b"3;\r\nabc\r\n0\r\n\r\n",
    "ext-empty-value": b"3;a=\r\nabc\r\n0\r\n\r\n",
    "ext-no-semicolon": b"3garbage\r\nabc\r\n0\r\n\r\n",
    "ext-unterminated-quote": b"3;a=\"x\r\nabc\r\n0\r\n\r\n",
    "trailer-no-colon": b"0\r\nnot a field\r\n\r\n",
    "trailer-space-in-name": b"0\r\nX Y: 1\r\n\r\n",
    "ext-bad-token-char": b"4;n[\r\nWiki\r\n0\r\n\r\n",
    "size-then-tabs": b"5\t\tb\r\nhello\r\n0\r\n\r\n",
    "trailer-whitespace-line": b"0\r\n \r\n\r\n",
    "trailer-looks-like-a-chunk": b"0\r\n3\r\nabc\r\n0\r\n\r\n",
}


def write(target, seeds):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write("conn", CONN)
    write("router", ROUTER)
    write("decode", DECODE)
    write("chunked", CHUNKED)
    print("wrote", sum(map(len, (CONN, ROUTER, DECODE, CHUNKED))), "seeds under", ROOT)
