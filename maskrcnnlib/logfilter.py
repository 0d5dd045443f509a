"""A filter on a module's stderr that drops TensorFlow's C++ log lines.

TensorFlow writes its C++ logs to file descriptor 2, where GRASS modules write
their messages too. maskrcnnlib.quiet runs this file as a separate process
(``python -I -S logfilter.py``: standard library only, no maskrcnnlib import) with
fd 2 of the module piped to its stdin and the real stderr as its stdout. It
passes every byte on at once, in order, except lines that start like a log line:

- absl:        ``E0000 00:00:1796337263.347311    5544 util.cc:131] ...``
- TSL's sink:  ``2026-05-01 12:00:00.000000: W tensorflow/...cc:42] ...``
- absl's notice ``WARNING: All log messages before absl::InitializeLog() ...``

Fatal (F) lines pass: they are the only explanation of a crash. A line starts
after a newline, a carriage return or a backspace (g.message -p ends its percent
with backspaces, and a log line may follow without a newline).
"""
import os
import signal
import sys

_DIGIT = "0123456789"
_LEVEL = "IWE"
# One pattern per log format: the characters allowed at each position of its start.
_PATTERNS = (
    (_LEVEL,) + (_DIGIT,) * 4 + (" ",) + (_DIGIT,) * 2 + (":",) + (_DIGIT,) * 2 + (":",) +
    (_DIGIT,) * 2,
    (_DIGIT,) * 4 + ("-",) + (_DIGIT,) * 2 + ("-",) + (_DIGIT,) * 2 + (" ",) +
    (_DIGIT,) * 2 + (":",) + (_DIGIT,) * 2 + (":",) + (_DIGIT,) * 2 + (".",) +
    (_DIGIT,) * 6 + (":",) + (" ",) + (_LEVEL,) + (" ",),
    tuple("WARNING: All log messages before absl::InitializeLog()"),
)
LOG_STARTS = tuple(tuple(frozenset(c.encode()) for c in pattern) for pattern in _PATTERNS)
LINE_ENDS = b"\n\r\b"

LOG, TEXT, UNDECIDED = "log", "text", "undecided"


def classify(start):
    """LOG if the bytes start a log line, TEXT if they cannot, else UNDECIDED."""
    verdict = TEXT
    for pattern in LOG_STARTS:
        size = min(len(start), len(pattern))
        if all(start[i] in pattern[i] for i in range(size)):
            if size == len(pattern):
                return LOG
            verdict = UNDECIDED
    return verdict


class LogLineFilter:
    """Feed bytes in, get the bytes to pass on; holds back only the start of a
    line that may still become a log line (at most ~55 bytes)."""

    def __init__(self):
        self.held = b""  # start of the current line, not yet decided
        self.at_line_start = True
        self.dropping = False  # inside a log line: drop up to its newline

    def feed(self, data):
        out = bytearray()
        position = 0
        while position < len(data):
            if self.dropping:
                end = data.find(b"\n", position)
                if end < 0:
                    break
                self.dropping, self.at_line_start = False, True
                position = end + 1
            elif self.at_line_start:
                position = self._decide(data, position, out)
            else:
                end = _next_line_end(data, position)
                if end < 0:
                    out += data[position:]
                    break
                out += data[position:end + 1]
                self.at_line_start = True
                position = end + 1
        return bytes(out)

    def _decide(self, data, position, out):
        """Read the start of a line byte by byte until it is known to be text or log."""
        while position < len(data):
            byte = data[position:position + 1]
            position += 1
            if not self.held and byte in LINE_ENDS:
                out += byte  # an empty line, or more backspaces
                continue
            self.held += byte
            verdict = classify(self.held)
            if verdict == LOG:
                self.held, self.dropping, self.at_line_start = b"", True, False
                return position
            if verdict == TEXT:
                out += self.held
                self.at_line_start = byte in LINE_ENDS
                self.held = b""
                return position
        return position

    def flush(self):
        """What is still held back, at the end of the input."""
        held, self.held = (b"" if self.dropping else self.held), b""
        return held


def _next_line_end(data, position):
    ends = [data.find(bytes([byte]), position) for byte in LINE_ENDS]
    ends = [end for end in ends if end >= 0]
    return min(ends) if ends else -1


def _write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def main():
    """stdin to stdout through LogLineFilter until the end of stdin."""
    # Ctrl+C reaches the whole process group: the module decides, the filter
    # keeps passing its last words on until the module's stderr closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    line_filter, writable = LogLineFilter(), True
    while True:
        data = os.read(0, 65536)
        if not data:
            break
        data = line_filter.feed(data)
        if writable:
            try:
                _write_all(1, data)
            except OSError:  # the reader has gone: keep draining so writers never block
                writable = False
    if writable:
        try:
            _write_all(1, line_filter.flush())
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
