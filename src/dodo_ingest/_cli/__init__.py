"""The ``dodo-ingest`` command's subcommands, one module per command group.

Modules here import only :mod:`click` at the top; rich, the HTTP client, the delivery
pipeline and the dev server are imported inside the commands, so that ``dodo-ingest --help``
starts fast.
"""
