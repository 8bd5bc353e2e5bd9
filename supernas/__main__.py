"""``python -m supernas`` runs the command line."""
from .cli import main

main()
