"""The catdog command line: `catdog COMMAND`, a table of commands (see cli.main)."""
