"""Nowcast's science: the PredRNN network, radar I/O, data sets, training, verification and plots.

Library code reports bad input (a missing file, a malformed option value, a run directory that
cannot be resumed) by raising :class:`InputError` with a one-line message that names the file or
option. The ``nowcast`` command (package ``cli``) prints that line and exits with status 2.
"""


class InputError(Exception):
    """Bad input from the user: one line naming the file or option and the problem."""
