"""Secure aggregation: the server learns the sum of the clients' vectors and nothing else.

Pairwise-masked aggregation with dropout recovery (Bonawitz et al. 2017), over every pair
(Mode.FULL) or a random sparse graph (Mode.SECAGG_PLUS, Bell et al. 2020), as two state
machines without I/O: `SecAggServer` and `SecAggClient`, driven by the dataclasses of
`messages`. Each module states the guarantee it provides next to the code providing it.

Security model: the server is honest but curious in unsigned rounds; with identities set
in `RoundSpec` keys are signed, the SecAgg+ graph is drawn from the clients' committed nonces,
and a per-owner consistency check defends against a server that lies about who survived, as
long as the threshold meets `safety.least_signed_threshold` (each client checks it). In
deployment the identities come from the operator's roster (`roster`), which clients hold
themselves.
"""

from fedcore.secagg.client import SecAggClient
from fedcore.secagg.config import Mode, RoundSpec, SecAggConfig, choose_bit_width, suggested_degree
from fedcore.secagg.errors import ProtocolError, RoundAborted, SecAggError
from fedcore.secagg.quantize import Quantizer, append_weight, split_weight
from fedcore.secagg.server import SecAggResult, SecAggServer

__all__ = [
    "Mode",
    "ProtocolError",
    "Quantizer",
    "RoundAborted",
    "RoundSpec",
    "SecAggClient",
    "SecAggConfig",
    "SecAggError",
    "SecAggResult",
    "SecAggServer",
    "append_weight",
    "choose_bit_width",
    "split_weight",
    "suggested_degree",
]
