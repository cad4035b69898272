"""Storage URLs as people may see them, and the rule for dataset URLs.

`redact_url` is the one function that makes a URL safe to show: every URL that reaches text
(logs, job errors, the status view, notifications, HTTP and CLI answers, error messages) goes
through it, or through `redact_text` when it is embedded in a message."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from .errors import InvalidInput

# Schemes whose URL names an object by bucket (or host) and key alone: a query or fragment
# would be read as part of the key, and often carries a token (X-Amz-Signature, ...).
KEY_ONLY_SCHEMES = ("s3", "gs", "file")

# the scheme's length is bounded: linear time on any text (a megabyte of letters would
# otherwise take minutes of backtracking)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s'\"<>`]+")


def redact_url(url: str, *, path: bool = True) -> str:
    """The URL without user info, query or fragment (signed URLs and tokens live there).

    `path=False` keeps only scheme and host, for URLs whose path is itself the secret (a chat
    webhook). The bucket or host keeps its case and port; a string that is not a URL (a local
    path) comes back unchanged."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
    except ValueError:  # e.g. an unbalanced '[' in the host: cut by hand
        head = re.split(r"[?#]", url, maxsplit=1)[0]
        scheme, sep, rest = head.partition("://")
        host, slash, rest_path = rest.partition("/")
        host = host.rpartition("@")[2]
        return f"{scheme}{sep}{host}" + (f"{slash}{rest_path}" if path else "")
    return urlunsplit((parts.scheme, netloc, parts.path if path else "", "", ""))


def redact_text(text: str) -> str:
    """`text` with every URL in it redacted (for messages built from other code's errors).
    Punctuation that ends a URL ('.', ',', ')' ...) is taken to be the sentence's."""

    def redact(match: re.Match[str]) -> str:
        url = match.group(0)
        core = url.rstrip(".,;:!?)]}")
        return redact_url(core) + url[len(core):]

    return _URL_IN_TEXT.sub(redact, text)


def key_url_problem(url: str) -> str | None:
    """Why an `s3://`, `gs://` or `file://` URL cannot be used as given (a query string or a
    fragment), in words that never repeat them; None when it can be (or has another scheme)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in KEY_ONLY_SCHEMES or not ("?" in url or "#" in url):
        return None
    what = " and ".join(w for w, c in (("a query string", "?"), ("a fragment", "#")) if c in url)
    return (f"{scheme}:// URL {redact_url(url)!r} has {what}: {scheme}:// URLs name an object "
            "by its path alone, so '?' and '#' are refused (they would be read as part of the "
            "name, and often carry an access token); give the URL without them")


def check_dataset_url(url: str) -> None:
    """Refuse a dataset URL that can never be downloaded as meant (InvalidInput, 422)."""
    if problem := key_url_problem(url):
        raise InvalidInput(f"dataset URL refused: {problem}")
