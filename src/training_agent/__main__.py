"""`python -m training_agent` runs the CLI."""

from training_agent.entrypoints.cli import main

main()
