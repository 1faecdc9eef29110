"""The command line: ``lcross <command>``, one table of commands in ``lcross.cli.main``, one module per command."""
