"""Conformance material for implementations of the fedcore wire protocol in other languages.

`fedcore.conformance.vectors` holds known-answer test vectors for secure aggregation (the JSON
file `vectors/secagg-v1.json` and the generator that writes it); docs/protocol.md cites them.
"""
