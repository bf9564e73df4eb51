"""The service in a subprocess for end-to-end tests: the demo's runner (sentinel/demo/service.py),
one class for both; the product never imports this package (it is not in the wheel)."""

from sentinel.demo.service import LiveService

__all__ = ["LiveService"]
