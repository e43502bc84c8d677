"""`python -m memvault` runs the command line."""

from memvault.cli.main import main

main()
