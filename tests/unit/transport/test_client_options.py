"""`run_client` and `BackgroundClient` take one `ClientOptions`, with fields by keyword over it."""

from __future__ import annotations

import pytest

from fedcore.client import BackgroundClient, Callbacks, ClientOptions, FunctionalApp
from fedcore.transport.grpc.client import client_options


def test_keywords_replace_fields_of_the_options_given() -> None:
    base = ClientOptions(max_train_s=5.0, properties={"site": "a"})

    opts = client_options(base, secure_rng=True, privacy_floor=None)

    assert (opts.max_train_s, opts.properties, opts.secure_rng) == (5.0, {"site": "a"}, True)
    assert opts.privacy_floor is None


def test_callbacks_or_properties_of_none_keep_the_defaults() -> None:
    opts = client_options(callbacks=None, properties=None)

    assert opts == ClientOptions() and isinstance(opts.callbacks, Callbacks)


def test_an_unknown_or_bad_setting_fails_by_name() -> None:
    with pytest.raises(TypeError, match="eligable"):
        client_options(eligable=lambda: True)
    with pytest.raises(ValueError, match="max_reconnect_s"):
        client_options(max_reconnect_s=0)


def test_a_background_client_takes_options_and_keywords() -> None:
    app = FunctionalApp(get_parameters=dict, fit=lambda p, c: None)  # never started

    client = BackgroundClient(app, "127.0.0.1:1", ClientOptions(max_train_s=3.0), client_id="x",
                              eligible=lambda: False)

    assert client.status.client_id == "x" and not client.running
