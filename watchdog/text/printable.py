"""Text from outside made safe to print: no forged lines, no terminal escape sequences.

Label values, versions, messages and notes come from metrics pages, registries, APIs and
people; written raw, a newline in one forges a log line and an ESC sequence reaches the
operator's terminal. Three strengths:

    quote_value(v)   a label value inside "…", escaped as Prometheus does (\\ \" \n), plus
                     every other control or invisible formatting character as \\xNN / \\uNNNN
    one_line(t)      free text on one line: control characters (newlines too) escaped
    terminal(t)      a whole block of output: control characters escaped except \n and \t
"""

from __future__ import annotations

import re
from typing import TextIO

_SIMPLE = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# C0 and C1 controls, DEL, line/paragraph separators, bidi and other invisible format characters.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]")
_UNSAFE_MULTILINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e"
                               r"\u2060-\u206f\ufeff\ufff9-\ufffb]")


def _code(ch: str) -> str:
    if ch in _SIMPLE:
        return _SIMPLE[ch]
    point = ord(ch)
    return f"\\x{point:02x}" if point <= 0xFF else f"\\u{point:04x}"


_QUOTED_UNSAFE = re.compile(_UNSAFE.pattern[:-1] + r'\\"]')


def quote_value(value: str) -> str:
    """The body of a quoted label value: `\\`, `"` and newlines escaped, like Prometheus."""
    return _QUOTED_UNSAFE.sub(lambda m: _code(m.group(0)), value)


def one_line(text: str) -> str:
    """`text` with every control character (newlines included) written as an escape."""
    return _UNSAFE.sub(lambda m: _code(m.group(0)), text)


def terminal(text: str) -> str:
    """`text` with control characters escaped except the newlines and tabs of the layout."""
    return _UNSAFE_MULTILINE.sub(lambda m: _code(m.group(0)), text)


class SafeWriter:
    """A text stream that passes everything through `terminal()` (CLI stdout and stderr)."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(terminal(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)
