"""Conformance material for implementations of the fedcore wire protocol in other languages.

- `python -m fedcore.conformance --client-cmd "..."` runs scripted scenarios (plain rounds,
  waiting and retry hints, declines, late results, a coordinator restart, a secure round with
  dropouts) against any client and reports each requirement of docs/protocol.md (section 10) as
  passed or failed; `reference_client` is fedcore's own client in the form the kit drives.
- `fedcore.conformance.vectors` holds known-answer test vectors for secure aggregation (the JSON
  file `vectors/secagg-v1.json` and the generator that writes it); docs/protocol.md section 8
  cites them.
"""
