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
