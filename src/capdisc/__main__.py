"""``python -m capdisc`` runs the command line."""

from capdisc.cli import main

main()
