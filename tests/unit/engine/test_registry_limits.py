"""The registry keeps what joins leave behind bounded: ids, properties, count, and eviction."""

from __future__ import annotations

import pytest

from fedcore.config import ConfigError, load_config
from fedcore.engine.config import Limits
from fedcore.engine.errors import EngineError, Reason
from fedcore.engine.registry import Registry

LIMITS = Limits(max_client_id_chars=8, max_properties=2, max_properties_bytes=10, max_clients=3,
                client_evict_s=100.0)


def _registry() -> Registry:
    return Registry(10.0, limits=LIMITS)


@pytest.mark.parametrize("client_id, properties, words", [
    ("", {}, "client_id"),
    ("x" * 9, {}, "client_id"),
    ("tab\there", {}, "client_id"),
    ("ok", {"a": "1", "b": "2", "c": "3"}, "max_properties"),
    ("ok", {"a": "x" * 10}, "max_properties_bytes"),
    ("ok", {"é": "é" * 5}, "max_properties_bytes"),  # bytes, not characters: 2 + 10
])
def test_a_join_beyond_the_limits_is_refused_and_stores_nothing(
    client_id: str, properties: dict[str, str], words: str
) -> None:
    registry = _registry()
    with pytest.raises(EngineError) as err:
        registry.join(client_id, now=0.0, properties=properties)
    assert err.value.reason is Reason.INVALID and words in str(err.value)
    assert len(registry) == 0


def test_joins_within_the_limits_are_kept_with_a_copy_of_their_properties() -> None:
    registry = _registry()
    props = {"os": "linux"}
    registry.join("a", now=0.0, properties=props)
    props["os"] = "changed"
    assert registry.authenticate("a", registry.join("a", now=1.0, properties={})).properties == {}
    assert len(registry) == 1


def test_max_clients_counts_new_ids_only() -> None:
    registry = _registry()
    for name in ("a", "b", "c", "a"):
        registry.join(name, now=0.0, properties={})
    with pytest.raises(EngineError) as err:
        registry.join("d", now=0.0, properties={})
    assert err.value.reason is Reason.TOO_LARGE and "max_clients" in str(err.value)
    assert len(registry) == 3


def test_joins_sweep_clients_not_seen_for_the_eviction_time() -> None:
    registry = _registry()
    for name in ("a", "b", "c"):
        registry.join(name, now=0.0, properties={})
    session = registry.join("a", now=50.0, properties={})
    registry.touch("a", 95.0)
    registry.join("d", now=101.0, properties={})  # b and c were last seen at 0: forgotten

    assert sorted(registry.available(101.0)) == ["a", "d"]
    assert registry.authenticate("a", session, 101.0).client_id == "a"
    assert len(registry) == 2


def test_a_client_past_the_eviction_time_is_forgotten_on_its_next_request() -> None:
    registry = _registry()
    session = registry.join("a", now=0.0, properties={})
    with pytest.raises(EngineError) as err:
        registry.authenticate("a", session, 100.5)
    assert err.value.reason is Reason.UNKNOWN_CLIENT
    assert len(registry) == 0


def test_evict_returns_how_many_it_forgot() -> None:
    registry = _registry()
    registry.join("a", now=0.0, properties={})
    registry.join("b", now=50.0, properties={})
    assert registry.evict(120.0) == 1
    assert registry.available(120.0) == []  # b is registered but silent past client_timeout_s
    assert len(registry) == 1


@pytest.mark.parametrize("field, value", [
    ("max_client_id_chars", 0), ("max_properties", -1), ("max_clients", 0),
    ("client_evict_s", 0.0), ("upload_budget_mb", 0.0), ("upload_idle_s", -1.0),
    ("min_chunk_bytes", 0),
])
def test_limits_refuse_values_that_bound_nothing(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        Limits(**{field: value})  # type: ignore[arg-type]


def test_eviction_never_comes_before_a_client_counts_as_gone() -> None:
    registry = Registry(60.0, limits=Limits(client_evict_s=30.0))
    session = registry.join("a", now=0.0, properties={})
    assert registry.authenticate("a", session, 59.0).client_id == "a"
    assert registry.evict(59.0) == 0 and registry.evict(61.0) == 1


def test_limits_are_read_from_the_limits_table() -> None:
    plan = load_config(None, {"limits.upload_budget_mb": 64.0, "limits.max_properties": 4})
    assert plan.config.limits == plan.run.engine.limits
    assert plan.run.engine.limits.upload_budget_bytes == 64 << 20
    assert plan.run.engine.limits.max_properties == 4
    assert load_config(None).run.engine.limits == Limits()


def test_an_unknown_limits_key_fails_naming_it() -> None:
    with pytest.raises(ConfigError, match="limits.upload_budget"):
        load_config(None, {"limits.upload_budget": 64.0})
