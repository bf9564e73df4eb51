"""One real Prometheus (with the service's metrics to scrape) for the whole session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from dashboards.helpers import populated_metrics
from tests.harness.prometheus import PrometheusStack, PrometheusUnavailable


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusStack]:
    if os.environ.get("SENTINEL_TEST_SKIP_PROMETHEUS") == "1":
        pytest.skip("SENTINEL_TEST_SKIP_PROMETHEUS=1")
    stack = PrometheusStack(
        root=tmp_path_factory.mktemp("prometheus"),
        webhook_url="http://127.0.0.1:9/unused",
        bearer_token="unused",
        metrics=populated_metrics(),
    )
    try:
        stack.start()
    except PrometheusUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield stack
    stack.stop()
