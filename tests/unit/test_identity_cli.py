"""`fedcore identity` enrols clients; `[secagg] roster` and the client flags load what it wrote."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from fedcore.cli import main
from fedcore.config import ConfigError, load_config
from fedcore.secagg.roster import public_key
from fedcore.storage.identity_files import load_identity_key, load_roster


def test_identity_enrols_clients_and_keeps_an_existing_key(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    roster = tmp_path / "roster.json"
    for cid in ("site-a", "site-b"):
        assert main(["identity", "--client-id", cid, "--key", str(tmp_path / f"{cid}.pem"),
                     "--roster", str(roster)]) == 0
    first = load_roster(roster).key_of("site-a")

    # enrolling again with the same key file keeps the key
    assert main(["identity", "--client-id", "site-a", "--key", str(tmp_path / "site-a.pem"),
                 "--roster", str(roster)]) == 0

    out = capsys.readouterr().out
    loaded = load_roster(roster)
    assert set(loaded.keys) == {"site-a", "site-b"}
    assert loaded.key_of("site-a") == first == public_key(load_identity_key(tmp_path / "site-a.pem"))
    assert base64.b64encode(first).decode() in out and "PRIVATE" not in out


def test_the_coordinator_config_loads_the_roster(tmp_path: Path) -> None:
    main(["identity", "--client-id", "a", "--key", str(tmp_path / "a.pem"),
          "--roster", str(tmp_path / "r.json")])
    toml = tmp_path / "c.toml"
    toml.write_text(f'[secagg]\nenabled = true\nroster = "{tmp_path / "r.json"}"\n')

    secagg = load_config(toml).run.engine.secagg

    assert secagg is not None and secagg.roster is not None and "a" in secagg.roster


def test_a_missing_roster_fails_at_start_naming_the_section(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text(f'[secagg]\nenabled = true\nroster = "{tmp_path / "nope.json"}"\n')
    with pytest.raises(ConfigError, match=r"\[secagg\].*nope.json"):
        load_config(toml)


def test_the_client_needs_key_roster_and_id_together(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(["client", "--server", "127.0.0.1:1", "--partition", "0", "--num-partitions", "2",
                 "--secagg-key", str(tmp_path / "k.pem")])
    assert code == 2
    assert "--secagg-key, --secagg-roster and --client-id go together" in capsys.readouterr().err
