"""Text from a request, made safe for a log line: control characters written as \\xNN.

A path can hold %0A, which a WSGI server decodes into a line break: written raw, it would forge a
log line. Standard library only, so gunicorn's configuration can import it before it forks.
"""
import re

# C0 and C1 control characters, and the backslash that starts their escapes.
LOG_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


def escaped(text):
    """Return `text` with every control character (and the backslash) written as \\xNN."""
    return LOG_UNSAFE.sub(lambda c: f"\\x{ord(c.group()):02x}", text)
