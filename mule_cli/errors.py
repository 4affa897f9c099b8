"""One exception type for user-facing errors: the CLI prints its message on one line and exits 2."""

import click


class MuleError(click.ClickException):
    """A problem the user can fix (bad input, missing model). Library callers may catch it too."""

    exit_code = 2
