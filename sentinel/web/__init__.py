"""The operator dashboard: page data (views), SVG charts, Jinja templates and static assets."""
