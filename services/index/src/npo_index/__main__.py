"""``python -m npo_index [--workers N]``: the ingest worker, as ``npo-index-worker`` (cli.py)."""

from npo_index.cli import main

main()
