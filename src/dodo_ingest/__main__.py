"""``python -m dodo_ingest``: the ``dodo-ingest`` command."""

from dodo_ingest.cli import main

main(prog_name="dodo-ingest")
