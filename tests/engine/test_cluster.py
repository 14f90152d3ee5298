"""Mirror configuration files and the local cluster launcher."""

from pathlib import Path

import pytest

from engine.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def base(**mirror):
    m = {"name": "mir", "databases": ["user"]}
    m.update(mirror)
    return {
        "mirror": m,
        "members": [
            {
                "name": "a",
                "type": "failover",
                "superserver": "127.0.0.1:6000",
                "private": "127.0.0.1:6001",
            },
            {
                "name": "b",
                "type": "failover",
                "superserver": "127.0.0.1:6010",
                "private": "127.0.0.1:6011",
            },
            {"name": "r", "type": "ro_reporting", "superserver": "127.0.0.1:6020"},
        ],
    }


def test_example_cluster_file_describes_two_failover_members_a_dr_and_a_reporting_async():
    cfg = load_config(ROOT / "examples" / "cluster.toml")
    types = [m.type for m in cfg.members]
    assert types.count("failover") == 2 and "dr" in types and "ro_reporting" in types
    assert cfg.first_primary.name == "MIRRORA"
    assert cfg.qos_timeout_ms == 8000


def test_names_are_uppercased_and_defaults_applied(tmp_path):
    cfg = parse_config(base(), tmp_path)
    assert cfg.name == "MIR" and cfg.databases == ["USER"]
    assert [m.name for m in cfg.members] == ["A", "B", "R"]
    assert (
        cfg.failover_compression == "System Selected" and cfg.async_compression == "System Selected"
    )
    assert cfg.member("r").data_dir == tmp_path / "var" / "R"
    assert cfg.parallel_for(cfg.member("a")) and not cfg.parallel_for(cfg.member("r"))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["mirror"].update(name="way-too-long-name"), "mirror.name"),
        (lambda d: d["mirror"].update(qos_timeout_ms=0), "qos_timeout_ms"),
        (lambda d: d["mirror"].update(failover_compression="Sometimes"), "failover_compression"),
        (lambda d: d["members"][0].update(type="primary"), r"members\[0\].type"),
        (lambda d: d["members"][1].update(superserver="127.0.0.1:6000"), "distinct"),
        (lambda d: d["members"][1].pop("private"), "private"),
        (lambda d: d["members"][2].update(superserver="nohostport"), "host:port"),
        (lambda d: d["members"][0].update(databases=["USER"]), "subset"),
        (lambda d: d["members"][2].update(databases=["OTHER"]), "not mirrored"),
        (lambda d: d["members"][0].update(dejournal_filter="m:f"), "reporting"),
        (lambda d: d["members"][2].update(codecs=["gzip"]), "codecs"),
        (lambda d: d["members"][2].update(name="bad name"), "name"),
        (lambda d: d.pop("members"), "members"),
    ],
)
def test_invalid_configuration_is_rejected_naming_the_key(tmp_path, change, message):
    data = base()
    change(data)
    with pytest.raises(ConfigError, match=message):
        parse_config(data, tmp_path)


def test_unknown_member_lookup_lists_known_members(tmp_path):
    cfg = parse_config(base(), tmp_path)
    with pytest.raises(ConfigError, match="members: A, B, R"):
        cfg.member("zz")


def test_invalid_toml_is_reported_with_the_file_name(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[mirror\nname=")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(p)
