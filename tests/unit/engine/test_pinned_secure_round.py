"""A secure round counts its upload as exactly the masked vectors' payloads (the figure the
round's record and the metrics report); found unpinned by a fresh mutation sample."""

from __future__ import annotations

from fedcore.compression.codec import UPLOAD_BYTES
from fedcore.secagg.packing import packed_size

from .test_declines import IDS, _play_secure, _secure_engine


def test_a_secure_round_reports_the_masked_payloads_it_received_as_its_upload() -> None:
    engine = _secure_engine()

    _play_secure(engine, quitter="nobody", at_step=-1, how="decline")

    (record,) = engine.records
    assert record.status == "ok", record.reason
    per_client = packed_size(6 + 1, 32)  # the model's 6 values and the weight, 32 bits each
    assert record.metrics[UPLOAD_BYTES] == len(IDS) * per_client
