"""The routing file: the default loads; a bad one is refused with the line at fault."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from sentinel.alerting.config import DEFAULT_ROUTES, ConfigError, load_routing, parse_routing
from sentinel.alerting.model import Matcher, fingerprint, parse_duration

GOOD = """\
route:
  receiver: slack
  group_by: [cluster, job, incident]
  group_wait: 10s
  routes:
    - matchers: ['severity="critical"']
      receiver: pager
      continue: true
    - matchers: ['category=~"gpu_.*|faulty_gpu"', 'cluster!="lab"']
      receiver: hw
      group_by: [host]
      repeat_interval: 1h
    - receiver: slack
receivers:
  - {name: slack, type: slack}
  - {name: pager, type: pagerduty}
  - {name: hw, type: webhook}
inhibit_rules:
  - source_matchers: ['role="cause"']
    target_matchers: ['role="symptom"']
    equal: [incident]
"""


def test_default_routes_load() -> None:
    config = load_routing()
    assert config.source == str(DEFAULT_ROUTES)
    assert set(config.receivers) == {"slack", "pagerduty", "log"}
    critical = {"severity": "critical", "category": "faulty_gpu", "incident": "i"}
    assert [r.receiver for r in config.routes_for(critical)] == ["pagerduty", "slack"]
    assert [r.receiver for r in config.routes_for({"category": "planned"})] == ["log"]
    assert [r.receiver for r in config.routes_for({"severity": "warning"})] == ["slack"]


def test_children_inherit_and_override() -> None:
    config = parse_routing(GOOD)
    hw = config.routes_for({"category": "gpu_hbm_memory", "cluster": "rsc1", "host": "n1"})
    assert [r.receiver for r in hw] == ["hw"]
    assert hw[0].group_by == ("host",)
    assert hw[0].group_wait == timedelta(seconds=10)  # inherited
    assert hw[0].repeat_interval == timedelta(hours=1)
    assert hw[0].group_interval == timedelta(minutes=5)  # Alertmanager's default
    assert hw[0].group_key({"host": "n1", "cluster": "x"}) == 'root/1:{host="n1"}'
    lab = {"category": "gpu_hbm_memory", "cluster": "lab"}
    assert [r.receiver for r in config.routes_for(lab)] == ["slack"]


BAD = [
    pytest.param("group_wait: 10s", "group_wait: ten seconds", 4, "bad duration", id="duration"),
    pytest.param(
        "receiver: hw", "receiver: nobody", 10, "no receiver named 'nobody'", id="receiver"
    ),
    pytest.param("'cluster!=\"lab\"'", "'cluster=~\"(\"'", 9, "bad regular expression", id="regex"),
    pytest.param("'role=\"cause\"'", "'role is cause'", 19, "bad matcher", id="matcher"),
    pytest.param("type: webhook}", "type: email}", 17, "type", id="receiver-type"),
    pytest.param(
        "continue: true", "continue: true\n      contniue: true", 9, "contniue", id="typo"
    ),
    pytest.param("equal: [incident]", "equal: [incident", 22, "not valid YAML", id="yaml"),
    pytest.param(
        "  - {name: hw, type: webhook}",
        "  - {name: pager, type: log}",
        17,
        "defined twice",
        id="dup",
    ),
]


@pytest.mark.parametrize(("old", "new", "line", "message"), BAD)
def test_bad_config_names_the_line(old: str, new: str, line: int, message: str) -> None:
    text = GOOD.replace(old, new)
    assert text != GOOD
    with pytest.raises(ConfigError) as err:
        parse_routing(text, "routes.yaml")
    assert f"routes.yaml:{line}:" in str(err.value), str(err.value)
    assert message in str(err.value)


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_routing(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_routing(tmp_path / "empty.yaml")


@pytest.mark.parametrize(
    ("text", "labels", "hit"),
    [
        ('host="n1"', {"host": "n1"}, True),
        ("host=n1", {"host": "n2"}, False),
        ('host!="n1"', {}, True),
        ('host=~"n[0-9]+"', {"host": "n12"}, True),
        ('host=~"n[0-9]"', {"host": "n12"}, False),  # anchored, as in Alertmanager
        ('host!~"n.*"', {"host": "m1"}, True),
        ('msg="say \\"hi\\""', {"msg": 'say "hi"'}, True),
    ],
)
def test_matchers(text: str, labels: dict[str, str], hit: bool) -> None:
    assert Matcher.parse(text).matches(labels) is hit


def test_durations_and_fingerprints() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration(5) == timedelta(seconds=5)
    with pytest.raises(ValueError):
        parse_duration("5 minutes")
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})
    assert fingerprint({"a": "1"}) != fingerprint({"a": "2"})
