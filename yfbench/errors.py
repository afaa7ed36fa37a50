"""Errors caused by user input: the runner prints their message alone, without a traceback."""


class UserError(Exception):
    """Something the user can fix (bad config value, missing data, bad checkpoint)."""


class DataError(UserError):
    """A data file is missing, corrupt or does not match its published checksum."""
