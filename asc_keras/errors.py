"""The one error class for what a user can fix: a config, a dataset, a file, a run folder.

The command-line tools print a `UserError` as one line and exit with status 2; every other
exception is a bug (ours or a library's) and keeps its traceback. Each kind of user error
also derives from the builtin it refines (`ValueError`, `RuntimeError`), so code that catches
those keeps working.
"""


class UserError(Exception):
    """Input that cannot be used; the message names the file, key or value and what was
    expected."""
