"""Log lines that a client cannot forge: control characters in logged text are escaped.

A request path such as ``/jobs/%0d%0aX-Injected:%201`` decodes to a CR LF; written raw, it would
start a second, forged line in a text log (and a NUL would corrupt it). :class:`EscapingFormatter`
escapes every control character (C0, DEL, C1, and the Unicode line and paragraph separators) in the
message, its arguments and any exception text, as ``\\xNN`` or ``\\uNNNN``. JSON logs escape them
by construction (``json.dumps``).
"""

from __future__ import annotations

import logging
import re

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control(text: str) -> str:
    """``text`` with every control character written as an escape sequence."""
    return _CONTROL.sub(_escape_char, text)


class EscapingFormatter(logging.Formatter):
    """A text formatter whose every line comes from us: the message and the exception text escaped.

    A traceback keeps its own line structure (each of its lines is escaped, then indented), so a
    line that starts at column 0 always starts with our timestamp.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return escape_control(super().formatMessage(record))

    def formatException(self, ei) -> str:  # noqa: N802, ANN001 (logging's name and signature)
        text = super().formatException(ei)
        return "\n".join("    " + escape_control(line) for line in text.split("\n"))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 (logging's name)
        return "\n".join("    " + escape_control(line) for line in stack_info.split("\n"))
