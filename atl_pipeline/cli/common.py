"""What every `atl` command shares: exit codes and the usage error."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """The command could not start: a missing file, a bad argument."""
