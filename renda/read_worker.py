"""The reader's worker process (`python -m renda.read_worker`): reads (kind, name, bytes, limits)
requests from stdin and answers (True, ReadReport) or (False, reason) on stdout, one at a time.
Its address space is bounded, so a hostile file cannot take the machine's memory."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    except (ImportError, ValueError, OSError):
        pass
    from renda.readers import extract, receive_message, send_message
    from renda.records import DataError

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a library that prints must not corrupt the answers
    while True:
        try:
            kind, name, raw, limits = receive_message(stdin)
        except EOFError:
            return
        try:
            answer = (True, extract(kind, name, raw, limits))
        except DataError as error:
            answer = (False, error.message)
        send_message(stdout, answer)


if __name__ == "__main__":
    main()
