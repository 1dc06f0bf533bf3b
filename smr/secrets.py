"""Keeping credentials out of what smr writes: specs, summaries, failure records, errors.

Store options and settings may hold secrets (an access key, a session token, a password in an
endpoint URL). Whatever smr records or prints passes through ``scrub`` (structures) or
``scrub_text`` (messages) first.
"""
from __future__ import annotations

import re
from typing import Any

REDACTED = "***"
#: Field names whose values are secrets wherever they appear.
_SECRET_NAME = re.compile(r"(secret|token|passw|credential|auth|private|api[_-]?key|"
                          r"access[_-]?key|session|signature)", re.IGNORECASE)
#: user:password@ in a URL.
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@:]+:[^/\s@]*@")
#: key=value or key: value pairs in free text whose key looks secret.
_TEXT_PAIR = re.compile(r"(?P<key>[\w.-]*(?:secret|token|passw|credential|api[_-]?key|"
                        r"access[_-]?key|signature)[\w.-]*)(?P<sep>\s*[=:]\s*['\"]?)"
                        r"(?P<value>[^\s'\",;&]+)", re.IGNORECASE)
#: AWS access key ids (AKIA..., ASIA...) anywhere.
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def scrub_text(text: str) -> str:
    """The text with URL passwords, secret-looking key=value pairs and AWS key ids redacted."""
    if not text:
        return text
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    text = _TEXT_PAIR.sub(lambda m: f"{m.group('key')}{m.group('sep')}{REDACTED}", text)
    return _AWS_KEY_ID.sub(REDACTED, text)


def scrub(obj: Any) -> Any:
    """A copy of a JSON-like structure with secret-named fields and secrets in strings redacted."""
    if isinstance(obj, dict):
        return {k: (REDACTED if isinstance(k, str) and is_secret_name(k) and v not in (None, "")
                    else scrub(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(v) for v in obj]
    if isinstance(obj, str):
        return scrub_text(obj)
    return obj
