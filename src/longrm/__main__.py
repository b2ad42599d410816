"""`python -m longrm` runs the command line."""

from longrm.cli import main

main()
