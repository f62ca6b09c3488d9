"""Messages to the user."""


def log_line(message: str) -> None:
    """Print and flush: piped to a file or ``tee``, lines must appear as they happen, not when
    the process exits (Python block-buffers stdout that is not a terminal)."""
    print(message, flush=True)
