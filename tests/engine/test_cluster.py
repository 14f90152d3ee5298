"""Mirror configuration files and the local cluster launcher."""

from pathlib import Path

import pytest

from engine.member.config import ConfigError, load_config, parse_config

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
        (lambda d: d["mirror"].update(tls=True), "tls_ca"),
        (lambda d: d["mirror"].update(tls=True, tls_ca="ca.pem"), "tls_cert and tls_key"),
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


def _cli(*args, timeout=60):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.mark.timeout(120)
def test_cluster_up_starts_every_member_and_down_stops_them(tmp_path):
    import json

    from engine.client.app import Client
    from tests.engine.cluster_fixtures import write_config

    cfg_path = write_config(tmp_path, ("failover", "failover", "dr", "ro_reporting"))
    up = _cli("cluster", "up", "-f", str(cfg_path))
    try:
        assert up.returncode == 0, up.stderr
        cfg = load_config(cfg_path)
        for m in cfg.members:
            assert str(m.superserver) in up.stdout
        state = json.loads((tmp_path / "cluster-state.json").read_text())
        assert [e["member"] for e in state["members"]] == ["A", "B", "C", "D"]
        with Client([str(cfg.member("B").superserver)]) as c:
            assert c.member_info["member"] == "A"
            c.set("USER", "Up", (1,), "yes")
        again = _cli("cluster", "up", "-f", str(cfg_path))
        assert again.returncode == 1 and "already up" in again.stderr
    finally:
        down = _cli("cluster", "down", "-f", str(cfg_path))
    assert down.returncode == 0, down.stderr
    assert "down" in down.stdout and not (tmp_path / "cluster-state.json").exists()
    for e in state["members"]:
        assert (
            not Path(f"/proc/{e['pid']}").exists()
            or "Z" in Path(f"/proc/{e['pid']}/stat").read_text()
        )


def test_cluster_down_without_state_file_says_so(tmp_path):
    from tests.engine.cluster_fixtures import write_config

    res = _cli("cluster", "down", "-f", str(write_config(tmp_path, ("failover",))))
    assert res.returncode == 1 and "no state file" in res.stderr


def test_instance_with_a_bad_config_exits_with_the_reason(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[mirror]\nname = "x"\n')
    res = _cli("instance", "--config", str(p), "--member", "A")
    assert res.returncode == 2 and "mirror.databases" in res.stderr
