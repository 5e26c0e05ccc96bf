"""`python -m kalloc.cli` runs the command line, as the `kalloc` script does (kalloc_machine.script:
Ctrl-C is one line and status 130)."""

from kalloc_machine.script import main

main()
