"""[compression] under [secagg]: quantising to p bits sets the masked integers' width to
p + ceil(log2 max_clients), so each client keeps p bits of precision, sums cannot wrap, and the
bytes each client uploads shrink with p; top-k (a sparse support) cannot be masked."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fedcore.cli import main
from fedcore.config import ConfigError
from fedcore.sim.config import load_simulation_config

RUN = """
[simulation]
clients = 4
model = "logreg"

[data]
dataset = "synthetic"
samples_per_client = 20

[rounds]
num_rounds = 2
clients_per_round = 4

[secagg]
enabled = true
max_clients = 10
weight_cap = 20.0    # each client's 20 examples weigh 1: a weight of 0.02 would round to 0 at 4 bits
{secagg}
[compression]
enabled = true
{compression}
"""


def _file(tmp_path: Path, compression: str, secagg: str = "") -> Path:
    path = tmp_path / "run.toml"
    path.write_text(RUN.format(compression=compression, secagg=secagg))
    return path


@pytest.mark.parametrize(("bits", "width"), [(8, 12), (4, 8), (1, 5)])
def test_quantising_to_p_bits_sets_the_masked_width(tmp_path: Path, bits: int, width: int) -> None:
    config = load_simulation_config(_file(tmp_path, f'kind = "quantize"\nbits = {bits}\n'))

    assert config.secagg is not None and config.secagg.bit_width == width
    assert config.compression is None  # the clients send the dense masked update, at b bits


def test_an_explicit_width_must_agree(tmp_path: Path) -> None:
    agreeing = load_simulation_config(_file(tmp_path, 'kind = "quantize"\nbits = 8\n',
                                            "bit_width = 12\n"))
    assert agreeing.secagg is not None and agreeing.secagg.bit_width == 12

    with pytest.raises(ConfigError, match="bit_width = 12.*bit_width = 32"):
        load_simulation_config(_file(tmp_path, 'kind = "quantize"\nbits = 8\n',
                                     "bit_width = 32\n"))


def test_top_k_cannot_be_masked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="topk"):
        load_simulation_config(_file(tmp_path, 'kind = "topk"\nfraction = 0.1\n'))


def test_fewer_bits_upload_fewer_bytes_in_a_secure_simulation(tmp_path: Path) -> None:
    uploads = {}
    for bits in (8, 4):
        (tmp_path / str(bits)).mkdir()
        config = _file(tmp_path / str(bits), f'kind = "quantize"\nbits = {bits}\n')
        out = tmp_path / str(bits) / "out"
        assert main(["simulate", "--config", str(config), "--out", str(out)]) == 0
        rounds = json.loads((out / "history.json").read_text())["rounds"]
        assert [r["status"] for r in rounds] == ["ok", "ok"]
        uploads[bits] = rounds[0]["upload_bytes"]
    # logreg on synthetic: 60 features x 10 classes + 10 biases, plus the weight coordinate
    dim = 60 * 10 + 10 + 1
    for bits, width in ((8, 12), (4, 8)):
        assert uploads[bits] == 4 * math.ceil(dim * width / 8)
