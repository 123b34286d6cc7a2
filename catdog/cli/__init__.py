"""The catdog command line: `catdog COMMAND`, a table of commands (see :mod:`catdog.cli.main`)."""
