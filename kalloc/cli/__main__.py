"""`python -m kalloc.cli` runs the command line, as the `kalloc` script does."""

from kalloc.cli import main

main()
