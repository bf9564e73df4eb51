"""One collector per source, all behind the tiny protocol in ``base``."""
