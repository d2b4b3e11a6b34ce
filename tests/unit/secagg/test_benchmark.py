"""The secure-aggregation benchmark runs end to end, inline and through a process pool."""

import pytest

from benchmarks import secagg


@pytest.mark.parametrize("workers", ["0", "1"])
def test_benchmark_round_is_correct(workers, capsys):
    argv = ["--clients", "6", "--dim", "1e5", "--dropout", "0.2", "--workers", workers]
    secagg.main(argv)
    line = capsys.readouterr().out

    assert '"correct": true' in line
    assert f'"workers": {workers}' in line
    assert '"survivors": 5' in line
    assert '"server_cpu_s": ' in line


def test_signed_benchmark_round_is_correct(capsys):
    secagg.main(["--clients", "6", "--dim", "1e4", "--dropout", "0.2", "--signed"])
    line = capsys.readouterr().out

    assert '"signed": true' in line and '"correct": true' in line and '"survivors": 5' in line
