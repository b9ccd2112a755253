"""The one base class for errors a user can cause and fix: the CLI prints them as one line, exit 2."""


class UserError(Exception):
    """Something the user wrote or set is wrong; the message names it and the fix."""
