"""Keep local filesystem paths out of anything published: strip them to basenames, or find them to refuse."""

from __future__ import annotations

import json
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


def find_local_paths(text: str, label_names=()) -> list[str]:
    """Absolute or home-relative paths occurring anywhere in free text, outside the `label_names` it holds.

    Label names are the classes of the user's data, which config.json publishes as they are: data, not local paths,
    though one may look like one ("pneumonia (/viral)"). They are looked for in every form a card or JSON file writes
    them in (`written_forms`).
    """
    for form in sorted(written_forms(label_names), key=len, reverse=True):
        text = text.replace(form, " ")
    return [m.group(0) for m in _EMBEDDED_PATH.finditer(text)]


def written_forms(names) -> set[str]:
    """Each name as given, on one line, as inline code and table cells write it (backticks as quotes, `|` escaped),
    with `_` as spaces (metric names), and JSON-escaped (once, and twice inside a JSON string). A name without a
    letter or digit has none: taken out of a text, it could take a real path's slashes with it."""
    forms = set()
    for name in (str(name) for name in names if any(c.isalnum() for c in str(name))):
        line = " ".join(name.split())
        escaped = json.dumps(name)[1:-1]
        forms |= {name, line, line.replace("`", "'"), line.replace("|", "\\|"), name.replace("_", " "), escaped,
                  json.dumps(escaped)[1:-1]}
    return forms


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
