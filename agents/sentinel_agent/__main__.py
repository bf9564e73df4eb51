"""``python -m sentinel_agent`` is ``sentinel-agent``."""

from sentinel_agent.cli import main

main()
