"""The ``mner`` command line: the one layer above the flows (``mner run``, ``serve``, ``predict``, ...)."""
