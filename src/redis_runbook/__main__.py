"""`python -m redis_runbook` runs the CLI."""

from redis_runbook.cli import main

main()
