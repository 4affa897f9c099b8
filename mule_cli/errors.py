"""One exception type for user-facing errors: the CLI prints its message on one line and exits 2."""

import click


class MuleError(click.ClickException):
    """A problem the user can fix (bad input, missing model). Library callers may catch it too."""

    exit_code = 2


def open_text(path, what: str = "file", error: type[MuleError] = MuleError, hint: str = ""):
    """Open a UTF-8 text input; a missing path or a folder becomes a one-line error that names it."""
    try:
        return open(path, encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such {what}" + (f" ({hint})" if hint else "")) from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, expected a {what}") from None
