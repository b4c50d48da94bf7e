"""Run the CLI with ``python -m api``."""

from api.cli import main

main()
