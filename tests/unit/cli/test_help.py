"""Every `--help` describes every flag and shows its default."""

from __future__ import annotations

import argparse

import pytest

from fedcore.cli import build_parser

COMMANDS = ["demo", "server", "client", "simulate", "health", "certs", "identity"]


def subparser(name: str) -> argparse.ArgumentParser:
    (sub,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices[name]
    return parser


@pytest.mark.parametrize("name", COMMANDS)
def test_every_flag_has_a_description(name: str) -> None:
    parser = subparser(name)

    bare = [a.option_strings[0] for a in parser._actions if a.option_strings and not a.help]

    assert not bare, f"fedcore {name}: flags without a description: {bare}"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_default_is_shown(name: str) -> None:
    parser = subparser(name)
    text = " ".join(parser.format_help().split())

    for action in parser._actions:
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            assert f"default: {action.default}" in text or f"default {action.default}" in text, (
                f"fedcore {name} {action.option_strings[0]}: default {action.default!r} not shown")


def test_flags_that_override_the_config_show_its_default_and_key() -> None:
    text = " ".join(subparser("server").format_help().split())

    assert "--rounds ROUNDS number of rounds (default: 10; TOML: [rounds] num_rounds)" in text
    assert "(default: 0; TOML: [rounds] clients_per_round)" in text


@pytest.mark.parametrize(("flag", "words"), [
    ("--num-partitions", "slices"), ("--seed", "split"), ("--partition", "auto"),
])
def test_the_client_flags_newcomers_asked_about_say_what_they_do(flag: str, words: str) -> None:
    (action,) = (a for a in subparser("client")._actions if flag in a.option_strings)

    assert action.help is not None and words in action.help


def test_help_lists_the_exit_statuses() -> None:
    text = build_parser().format_help()

    assert "exit status:" in text and "3  refused" in text


def test_the_demo_takes_a_port() -> None:
    args = build_parser().parse_args(["demo", "--port", "18000"])

    assert args.port == 18000
