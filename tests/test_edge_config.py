"""Edge config: the documented example, malformed configs with field-naming errors, and property tests."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.config import EdgeConfig, load_config, parse_config
from storeflow.contract import BadInput

EXAMPLE = Path(__file__).parent.parent / "docs" / "edge-config.example.yaml"
PLUGIN = "test_edge_plugin:make_manual"


def base() -> dict:
    return {
        "agent": "box-1", "store": "mini-store",
        "readers": [{"reader": "R1", "protocol": PLUGIN, "serial": {"port": "/dev/ttyUSB0", "baud": 115200},
                     "antennas": {1: 1, 2: 3}},
                    {"reader": "R2", "protocol": PLUGIN, "mqtt": {"topic": "impinj/R2/events"}}],
        "doors": [{"door": "D1", "protocol": PLUGIN, "mqtt": {"topic": "irisys/D1"}}],
        "uplink": {"host": "127.0.0.1", "port": 1883},
        "spool": {"dir": "/tmp/spool", "max_mb": 10},
    }


def test_example_config_is_valid_and_documents_every_field():
    cfg = load_config(EXAMPLE)
    assert cfg.agent and cfg.uplink.tls and cfg.smoothing.window_s == 1.0
    assert {r.protocol for r in cfg.readers} >= {"impinj-r2000", "chafon-288m", "impinj-iot", "zebra-iot"}
    text = EXAMPLE.read_text()

    from edge import config as c
    for model in (c.EdgeConfig, c.ReaderConfig, c.DoorConfig, c.UplinkConfig, c.SpoolConfig, c.SmoothingConfig,
                  c.BatchConfig, c.ClockConfig, c.SerialPort, c.MqttSource):
        for name in model.model_fields:
            assert f"{name}:" in text or name in ("password", "insecure"), f"{model.__name__}.{name} not in example"


def test_defaults_and_relative_spool(tmp_path):
    d = base()
    d["spool"] = {"dir": "spool"}
    p = tmp_path / "edge.yaml"
    p.write_text(yaml.safe_dump(d))
    cfg = load_config(p)
    assert cfg.spool.dir == tmp_path / "spool" and cfg.spool.max_mb == 1024
    assert cfg.uplink.effective_port == 1883 and cfg.readers[0].antennas == {1: 1, 2: 3}
    assert cfg.smoothing.window_s == 0 and cfg.batch.max_reads == 5000


@pytest.mark.parametrize("mutate, expect", [
    (lambda d: d.pop("agent"), "agent: Field required"),
    (lambda d: d.update(agent="-bad"), "agent: '-bad' is not an agent id"),
    (lambda d: d.update(store="Bad Store"), "store: 'Bad Store' is not a store id"),
    (lambda d: d["readers"][0]["serial"].update(baud=0), "readers[0] (reader 'R1').serial.baud"),
    (lambda d: d["readers"][1].update(reader="R1"), "readers[1] (reader 'R1').reader: duplicate reader id"),
    (lambda d: d["readers"][1].update(protocol="nope"), "readers[1] (reader 'R2').protocol: unknown protocol 'nope'"),
    (lambda d: d["readers"][1].update(protocol="no_such_mod:f"), "cannot import driver module 'no_such_mod'"),
    (lambda d: d["readers"][0].update(mqtt={"topic": "x"}), "readers[0] (reader 'R1'): give serial or mqtt, not both"),
    (lambda d: d["readers"][0].update(antennas={1: 0}), "readers[0] (reader 'R1').antennas"),
    (lambda d: d["readers"][0].update(colour="red"), "readers[0] (reader 'R1').colour: Extra inputs"),
    (lambda d: d["doors"][0].pop("door"), "doors[0].door: Field required"),
    (lambda d: d["readers"][0].update(protocol="irisys"), "readers[0] (reader 'R1').protocol: 'irisys' is a door"),
    (lambda d: d["readers"][0].update(protocol="impinj-iot"), "readers[0] (reader 'R1').mqtt: protocol impinj-iot needs"),
    (lambda d: d["readers"][1].update(protocol="impinj-r2000"), "readers[1] (reader 'R2').serial: protocol"),
    (lambda d: d["readers"][0].update(protocol="impinj-r2000", options={"cycle": 1}),
     "readers[0] (reader 'R1').options: unknown option(s) cycle for impinj-r2000; allowed:"),
    (lambda d: d["uplink"].update(port=70000), "uplink.port: Input should be less than or equal to 65535"),
    (lambda d: d["uplink"].update(topic_prefix="a/b"), "uplink.topic_prefix"),
    (lambda d: d["uplink"].update(password="x", password_env="Y"), "uplink: give password or password_env"),
    (lambda d: d["spool"].update(max_mb=-1), "spool.max_mb"),
    (lambda d: d.pop("spool"), "spool: Field required"),
    (lambda d: d.update(smoothing={"window_s": "soon"}), "smoothing.window_s"),
    (lambda d: d.update(batch={"max_reads": 0}), "batch.max_reads"),
])
def test_malformed_configs_name_the_field(mutate, expect):
    d = base()
    mutate(d)
    with pytest.raises(BadInput) as e:
        parse_config(d, "edge.yaml")
    assert str(e.value).startswith("edge.yaml: ") and expect in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(BadInput, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("agent: a\nreaders: [\n")
    with pytest.raises(BadInput, match="not valid YAML"):
        load_config(p)
    p.write_text("- just\n- a list\n")
    with pytest.raises(BadInput, match="top level must be a mapping"):
        load_config(p)
    p.write_bytes(b"\xff\xfe agent")
    with pytest.raises(BadInput, match="not UTF-8"):
        load_config(p)


def test_password_env(monkeypatch):
    d = base()
    d["uplink"].update(username="u", password_env="SF_TEST_EDGE_PW")
    cfg = parse_config(d)
    with pytest.raises(BadInput, match="SF_TEST_EDGE_PW is not set"):
        cfg.uplink.effective_password()
    monkeypatch.setenv("SF_TEST_EDGE_PW", "s3cret")
    assert cfg.uplink.effective_password() == "s3cret"


# --- property tests ------------------------------------------------------------------------------------
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
                        st.text(max_size=12))
json_value = st.recursive(json_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)

_ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,10}", fullmatch=True)
valid_reader = st.fixed_dictionaries({
    "reader": _ID, "protocol": st.just(PLUGIN),
    "serial": st.fixed_dictionaries({"port": st.just("/dev/ttyS0"), "baud": st.integers(1, 4_000_000)}),
    "antennas": st.dictionaries(st.integers(1, 65535), st.integers(1, 65535), max_size=4),
    "options": st.dictionaries(st.text(min_size=1, max_size=6), st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)),
        max_size=3),
})
valid_config = st.fixed_dictionaries({
    "agent": _ID,
    "store": st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True),
    "readers": st.lists(valid_reader, max_size=4, unique_by=lambda r: r["reader"]),
    "uplink": st.fixed_dictionaries({"host": st.just("broker.example"), "port": st.integers(1, 65535),
                                     "tls": st.booleans()}),
    "spool": st.fixed_dictionaries({"dir": st.just("/tmp/x"), "max_mb": st.floats(0.01, 1e6)}),
    "smoothing": st.fixed_dictionaries({"window_s": st.floats(0, 60)}),
    "batch": st.fixed_dictionaries({"max_reads": st.integers(1, 60000), "max_delay_s": st.floats(0.01, 600)}),
})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_config)
def test_valid_configs_parse_and_round_trip(d):
    cfg = parse_config(d)
    assert [r.reader for r in cfg.readers] == [r["reader"] for r in d["readers"]]
    assert parse_config(cfg.model_dump(mode="json", exclude_none=True)) == cfg


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_value)
def test_arbitrary_documents_give_a_config_or_badinput(doc):
    try:
        assert isinstance(parse_config(doc), EdgeConfig)
    except BadInput as e:
        assert str(e) and "\n" not in str(e)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_config, st.data())
def test_one_bad_field_is_named(d, data):
    """Replace one leaf of a valid config with junk: the result is valid, or the error names that field."""
    d = copy.deepcopy(d)
    path: list = []
    node = d
    while isinstance(node, (dict, list)) and node:
        key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
        path.append(key)
        if not isinstance(node[key], (dict, list)) or not node[key] or data.draw(st.booleans()):
            node[key] = data.draw(json_value)
            break
        node = node[key]
    try:
        parse_config(d)
    except BadInput as e:
        top = path[0]
        assert f"{top}" in str(e), (path, str(e))
