"""Exit statuses of the ``codebus`` command (documented in ``codebus --help`` and the
README). A module of its own, importing nothing, so that ``codebus --help`` stays fast."""

#: Exit statuses (documented in ``codebus --help`` and the README): a script can tell
#: "fix the command line" from "fix the configuration" from "try again later".
EXIT_USAGE = 2  # bad arguments or input on the command line (click's own usage code)
EXIT_CONFIG = 3  # CODEBUS_* settings, a config file or a unit definition is wrong
EXIT_SERVICE = 4  # RabbitMQ or Redis unreachable or refusing, a port already in use

EXIT_CODES_HELP = f"""\b
Exit status:
  0  success
  1  unexpected error (a bug: please report the traceback)
  {EXIT_USAGE}  usage error: bad arguments, options or --data
  {EXIT_CONFIG}  configuration error: CODEBUS_* variables, config files, units
  {EXIT_SERVICE}  service error: RabbitMQ or Redis unreachable or refusing, port in use
"""
