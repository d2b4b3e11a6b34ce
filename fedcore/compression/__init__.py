"""Compression of plain-round uploads: stochastic uniform quantisation (8, 4, 1 bits) and top-k
sparsification with error feedback, carried inside the ordinary tensor payload.

A client compresses its update (`Compressor.compress`); the payload's tensors then have reserved
names (`codec`), and the coordinator's plain collector decodes them against the model's layout
before aggregation (`codec.decode_update`). Secure aggregation masks the dense quantised
update instead, so these codecs apply to plain rounds only.
"""

from fedcore.compression.codec import Compression, Compressor, decode_update, is_compressed

__all__ = ["Compression", "Compressor", "decode_update", "is_compressed"]
