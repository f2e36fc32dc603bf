"""Keep local filesystem paths out of anything published: strip them to basenames, or find them to refuse."""

from __future__ import annotations

import re

# An absolute path (POSIX, home-relative or Windows drive) standing on its own, not inside a URL or a word.
_EMBEDDED_PATH = re.compile(r"""(?<![\w:/.~\\-])(?:~|[A-Za-z]:)?[\\/][^\s'"<>|()\[\]{}\\/,;]+(?:[\\/][^\s'"<>|()\[\]{}\\/,;]*)*""")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def basename(path: str) -> str:
    """Last component of a POSIX or Windows path."""
    parts = [p for p in re.split(r"[\\/]", path.strip()) if p]
    return parts[-1] if parts else ""


def is_local_path(value: str) -> bool:
    """True for a string that is a whole local path: absolute, `~`, `./`, `../`, a drive, or nested relative.

    A Hub repo id (`user/name`) and URLs are not paths.
    """
    text = value.strip()
    if not text or _URL.match(text) or any(c.isspace() for c in text):
        return False
    if text.startswith(("/", "~", "./", "../", ".\\", "..\\")) or re.match(r"^[A-Za-z]:[\\/]", text) or "\\" in text:
        return True
    return text.count("/") >= 2


def find_local_paths(text: str) -> list[str]:
    """Absolute or home-relative paths occurring anywhere in free text."""
    return [m.group(0) for m in _EMBEDDED_PATH.finditer(text)]


def scrub(value):
    """A copy of a JSON-like value with every local path reduced to its basename (in whole values and in text).

    Dict keys are names (e.g. `confusion/normal/pneumonia`), not paths, and are kept.
    """
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        if is_local_path(value):
            return basename(value)
        return _EMBEDDED_PATH.sub(lambda m: basename(m.group(0)), value)
    return value
