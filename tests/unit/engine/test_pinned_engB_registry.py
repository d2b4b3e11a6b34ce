"""The registry's windows on a clock that does not start at 0: a client is forgotten only once
strictly more than the eviction time has passed since it was last heard from, joins sweep
stale clients at most once per tenth of the eviction time (the first join at or after it does),
contact never moves backwards, and properties of exactly the byte limit are taken."""

from __future__ import annotations

import pytest

from fedcore.engine.config import Limits
from fedcore.engine.errors import EngineError, Reason
from fedcore.engine.registry import Registry

T0 = 86_400.0
LIMITS = Limits(client_evict_s=100.0, max_properties_bytes=10, max_properties=2)


def _registry() -> Registry:
    return Registry(10.0, limits=LIMITS)


def test_a_client_is_forgotten_only_past_the_eviction_time() -> None:
    registry = _registry()
    session = registry.join("a", now=T0, properties={})
    assert registry.evict(T0 + 100.0) == 0
    assert registry.authenticate("a", session, T0 + 100.0).client_id == "a"
    assert registry.evict(T0 + 100.001) == 1 and len(registry) == 0


def test_contact_never_moves_backwards_and_unknown_clients_are_ignored() -> None:
    registry = _registry()
    registry.join("a", now=T0, properties={})
    registry.touch("a", T0 + 50.0)
    registry.touch("a", T0 + 1.0)  # a late-arriving older request
    registry.touch("nobody", T0 + 1.0)
    assert registry.is_live("a", T0 + 60.0) and not registry.is_live("a", T0 + 60.001)
    assert len(registry) == 1


def test_joins_sweep_at_most_once_per_tenth_of_the_eviction_time() -> None:
    registry = _registry()
    registry.join("old", now=T0 - 95.0, properties={})  # sweeps; next sweep at T0 - 85
    registry.join("a", now=T0, properties={})  # sweeps (old is 95 s silent: kept); next T0 + 10
    registry.join("b", now=T0 + 9.5, properties={})  # old is evictable, but no sweep yet
    assert len(registry) == 3
    registry.join("c", now=T0 + 10.0, properties={})  # the first join at the tenth: sweeps
    assert len(registry) == 3 and sorted(registry.available(T0 + 10.0)) == ["a", "b", "c"]
    with pytest.raises(EngineError) as err:  # old was forgotten
        registry.authenticate("old", b"x" * 16, T0 + 10.0)
    assert err.value.reason is Reason.UNKNOWN_CLIENT


def test_properties_of_exactly_the_byte_limit_are_taken() -> None:
    registry = _registry()
    registry.join("a", now=T0, properties={"ab": "x" * 8})  # 2 + 8 bytes
    registry.join("b", now=T0, properties={"k": "12345", "l": "123"})  # 1 + 5 + 1 + 3
    assert len(registry) == 2
    with pytest.raises(EngineError) as err:
        registry.join("c", now=T0, properties={"k": "12345", "l": "1234"})  # 11 bytes
    assert err.value.reason is Reason.INVALID and len(registry) == 2
