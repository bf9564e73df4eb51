"""``python -m agents`` is ``sentinel-agent``."""

from agents.cli import main

main()
