"""Hide the password of any URL before it is printed, logged or journaled — valid
URL or not (a config error quotes what it was given, and that may be a mistyped
`http://user:password@host`). Over-redacting is fine; leaking is not."""

from __future__ import annotations

import re

MASK = "***"
# scheme://USERINFO@...: the userinfo runs to the last `@` before whitespace or a quote
# (a password may hold an unescaped `@` or `/`).
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s'\"<>]*)@")


def _masked(userinfo: str) -> str:
    user, colon, _ = userinfo.partition(":")
    return f"{user}:{MASK}" if colon else userinfo


def redact_url(url: str) -> str:
    """`url` with the password part of its userinfo replaced by `***`; a URL without
    a password (or no URL at all) comes back unchanged."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, after = rest.rpartition("@")
    if not at:
        return url
    return f"{scheme}{sep}{_masked(userinfo)}@{after}"


def redact(text: str) -> str:
    """`text` with the password of every `scheme://user:password@` in it replaced."""
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{_masked(m.group('userinfo'))}@", text)
