"""Vector groups for the cryptographic building blocks of secure aggregation.

Each function returns one named group: a dict with a `description` and `cases`. Bytes are
lowercase hex; integers are JSON numbers. Every value comes from the reference code in
`fedcore.secagg` run on inputs drawn from `drbg` streams.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedcore.conformance.vectors.drbg import Scripted, Stream, take
from fedcore.secagg import keys, packing, prg, shamir
from fedcore.secagg.config import Mode, RoundSpec, SecAggConfig
from fedcore.secagg.graph import Graph
from fedcore.secagg.messages import AdvertiseKeys

Group = dict[str, Any]


def _x25519(label: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(take(label, 32))


def x25519_group() -> Group:
    """X25519 (RFC 7748) public keys and shared secrets from raw 32-byte private keys."""
    cases = []
    for i in range(3):
        a, b = _x25519(f"x25519/{i}/a"), _x25519(f"x25519/{i}/b")
        shared = keys.agree(a, keys.public_bytes(b))
        assert shared == keys.agree(b, keys.public_bytes(a))
        cases.append({
            "private_a": keys.private_bytes(a).hex(), "public_a": keys.public_bytes(a).hex(),
            "private_b": keys.private_bytes(b).hex(), "public_b": keys.public_bytes(b).hex(),
            "shared": shared.hex(),
        })
    return {"description": "X25519: public = X25519(private, 9); shared = X25519(private_a, "
            "public_b) = X25519(private_b, public_a). Private keys are the raw 32 bytes as drawn "
            "(clamping is part of X25519).", "cases": cases}


def hkdf_group() -> Group:
    """The pairwise mask seed and share key derivations (HKDF-SHA256, no salt, 32 bytes)."""
    cases = []
    for i, (round_id, a, b) in enumerate([(0, 1, 2), (11, 3, 1), (2**40 + 5, 7, 70000)]):
        shared = take(f"hkdf/{i}/shared", 32)
        prk = hmac.digest(bytes(32), shared, "sha256")
        lo, hi = min(a, b), max(a, b)
        tail = round_id.to_bytes(8, "big") + lo.to_bytes(4, "big") + hi.to_bytes(4, "big")
        mask_seed = keys.derive_mask_seed(shared, round_id=round_id, a=a, b=b)
        assert mask_seed == keys.derive_mask_seed(shared, round_id=round_id, a=b, b=a)
        cases.append({
            "shared": shared.hex(), "round_id": round_id, "a": a, "b": b, "prk": prk.hex(),
            "mask_info": (keys.MASK_LABEL + tail).hex(), "mask_seed": mask_seed.hex(),
            "share_info": (keys.SHARE_LABEL + tail).hex(),
            "share_key": keys.derive_share_key(shared, round_id=round_id, a=a, b=b).hex(),
        })
    return {"description": "HKDF-SHA256 (RFC 5869) with salt = 32 zero bytes (the RFC's "
            "default), L = 32: prk = HMAC-SHA256(salt, shared); okm = HMAC-SHA256(prk, info || "
            "0x01). info = label || u64be(round_id) || u32be(min(a, b)) || u32be(max(a, b)), "
            "label b'fedcore-secagg-v1/mask-seed' or b'fedcore-secagg-v1/share-key'.",
            "cases": cases}


def share_encryption_group() -> Group:
    """AES-256-GCM sealing of one share plaintext."""
    cases = []
    for i, (round_id, sender, receiver) in enumerate([(11, 1, 2), (11, 2, 1), (3, 300, 7)]):
        key = take(f"aead/{i}/key", 32)
        graph_seed = take(f"aead/{i}/graph-seed", 32)
        plaintext = take(f"aead/{i}/plaintext", 2 * shamir.SHARE_BYTES)
        ad = (keys.DOMAIN + b"/share" + round_id.to_bytes(8, "big") + graph_seed
              + sender.to_bytes(4, "big") + receiver.to_bytes(4, "big"))
        sealed = keys.encrypt_share(key, plaintext, round_id=round_id, graph_seed=graph_seed,
                                    sender=sender, receiver=receiver)
        assert keys.decrypt_share(key, sealed, round_id=round_id, graph_seed=graph_seed,
                                  sender=sender, receiver=receiver) == plaintext
        cases.append({
            "key": key.hex(), "round_id": round_id, "graph_seed": graph_seed.hex(),
            "sender": sender, "receiver": receiver, "nonce": sender.to_bytes(12, "big").hex(),
            "associated_data": ad.hex(), "plaintext": plaintext.hex(), "sealed": sealed.hex(),
        })
    return {"description": "AES-256-GCM, 96-bit nonce = sender id as 12 bytes big-endian, "
            "associated data = b'fedcore-secagg-v1/share' || u64be(round_id) || graph_seed || "
            "u32be(sender) || u32be(receiver); sealed = ciphertext || 16-byte tag "
            "(72 + 16 = 88 bytes for a share plaintext).", "cases": cases}


def commitments_group() -> Group:
    """Self-mask seed commitments, graph commitments and the committed graph seed."""
    seed_cases, graph_cases = [], []
    for i, (round_id, owner) in enumerate([(11, 1), (12, 4)]):
        seed = take(f"commit/{i}/seed", 32)
        preimage = keys.DOMAIN + b"/seed" + round_id.to_bytes(8, "big") + owner.to_bytes(4, "big")
        digest = keys.seed_commitment(seed, round_id=round_id, owner=owner)
        assert digest == hashlib.sha256(preimage + seed).digest()
        seed_cases.append({"round_id": round_id, "owner": owner, "seed": seed.hex(),
                           "preimage": (preimage + seed).hex(), "commitment": digest.hex()})
        nonce = take(f"commit/{i}/nonce", 32)
        header = (keys.DOMAIN + b"/graph-commitment" + round_id.to_bytes(8, "big")
                  + owner.to_bytes(4, "big"))
        graph_cases.append({
            "round_id": round_id, "owner": owner, "nonce": nonce.hex(),
            "preimage": (header + nonce).hex(),
            "commitment": keys.graph_commitment(nonce, round_id=round_id, owner=owner).hex(),
        })
    nonces = [(owner, take(f"commit/graph-seed/{owner}", 32)) for owner in (3, 1, 2)]
    preimage = keys.DOMAIN + b"/graph-seed" + (7).to_bytes(8, "big") + (3).to_bytes(4, "big")
    for owner, nonce in sorted(nonces):
        preimage += owner.to_bytes(4, "big") + nonce
    seed_value = keys.graph_seed(round_id=7, nonces=nonces)
    assert seed_value == hashlib.sha256(preimage).digest()
    return {
        "description": "SHA-256 commitments. seed_commitment = SHA-256(b'fedcore-secagg-v1/seed' "
        "|| u64be(round_id) || u32be(owner) || seed). graph_commitment = SHA-256("
        "b'fedcore-secagg-v1/graph-commitment' || u64be(round_id) || u32be(owner) || nonce). "
        "graph_seed = SHA-256(b'fedcore-secagg-v1/graph-seed' || u64be(round_id) || u32be(count) "
        "|| for each (id, nonce) by increasing id: u32be(id) || nonce).",
        "seed_commitments": seed_cases,
        "graph_commitments": graph_cases,
        "graph_seeds": [{"round_id": 7, "nonces": [{"owner": o, "nonce": n.hex()}
                                                   for o, n in nonces],
                         "preimage": preimage.hex(), "graph_seed": seed_value.hex()}],
    }


def _shamir_case(secret_bytes: list[bytes], xs: list[int], threshold: int,
                 source: Stream | Scripted, subsets: list[list[int]]) -> dict[str, Any]:
    limbs = np.concatenate([shamir.secret_to_limbs(s) for s in secret_bytes])
    rows = shamir.split_limbs(limbs, xs=xs, threshold=threshold, random_bytes=source)
    drawn = b"".join(source.draws)
    # the coefficients as drawn: first draw fills degree 1..t-1 for every limb, redraws follow
    coeffs = shamir.random_elements(Scripted(drawn, "unused"), (threshold - 1) * limbs.size)
    reconstructions = []
    for subset in subsets:
        picked = [xs.index(x) for x in subset]
        per_secret = []
        for k in range(len(secret_bytes)):
            part = rows[picked][:, k * shamir.LIMBS:(k + 1) * shamir.LIMBS]
            per_secret.append(shamir.reconstruct(subset, part, threshold=threshold).hex())
        reconstructions.append({
            "xs": subset,
            "lagrange_at_0": [int(c) for c in shamir.lagrange_coefficients(subset[:threshold])],
            "secrets": per_secret,
        })
    return {
        "secrets": [s.hex() for s in secret_bytes],
        "limbs": [int(v) for v in limbs],
        "xs": xs,
        "threshold": threshold,
        "random_bytes": drawn.hex(),
        "coefficients": [[int(v) for v in coeffs[d * limbs.size:(d + 1) * limbs.size]]
                         for d in range(threshold - 1)],
        "shares": [{"x": x, "values": [int(v) for v in row], "encoded": shamir.encode_share(row).hex()}
                   for x, row in zip(xs, rows, strict=True)],
        "reconstructions": reconstructions,
    }


def shamir_group() -> Group:
    """Shamir sharing of 32-byte secrets over GF(2^31 - 1), limb by limb."""
    one = [take("shamir/0/secret", 32)]
    two = [take("shamir/1/seed", 32), take("shamir/1/mask-key", 32)]
    # words 0xffffffff and 0x7fffffff (little-endian bytes ff ff ff 7f) both reduce to
    # p = 2^31 - 1 and must be redrawn
    rejecting = Scripted(bytes.fromhex("ffffffff") + bytes.fromhex("ffffff7f") * 2, "shamir/2/rest")
    cases = [
        _shamir_case(one, [1, 2, 3, 4, 5], 3, Stream("shamir/0/coefficients"),
                     [[1, 2, 3], [2, 4, 5], [1, 2, 3, 4, 5]]),
        _shamir_case(two, [1, 2, 3, 4], 3, Stream("shamir/1/coefficients"), [[1, 2, 4]]),
        _shamir_case([take("shamir/2/secret", 32)], [2, 5, 9], 2, rejecting, [[5, 9]]),
        _shamir_case([bytes([255]) * 32], [1, 2], 1, Stream("shamir/3/coefficients"), [[2]]),
    ]
    return {"description": "A 32-byte secret is read as a little-endian integer v and cut into "
            "9 limbs of 30 bits, least significant first (limb i = (v >> 30i) & (2^30 - 1); the "
            "last holds 16 bits). Each limb is the constant term of its own polynomial of degree "
            "t - 1 over GF(p), p = 2^31 - 1; coefficient j (j = 1..t-1) of limb l is element "
            "(j - 1) * limbs + l of the draw. Elements are drawn as little-endian u32 words & "
            "0x7fffffff, redrawing (in order, from fresh bytes) every index whose value is p. "
            "A share is the limbs' values at x, each as a u32 little-endian word; x are the "
            "holders' protocol ids. Case 1 shares two secrets at once (seed then mask key, as a "
            "client does); case 3 shows rejection sampling.", "cases": cases}


def prg_group() -> Group:
    """Mask expansion: AES-128-CTR keystream words."""
    cases = []
    for i, (dim, bits) in enumerate([(8, 32), (5, 64), (3, 32)]):
        seed = take(f"prg/{i}/seed", 32)
        dtype = np.uint32 if bits == 32 else np.uint64
        words = prg.expand(seed, dim, dtype)
        stream = words.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
        cases.append({"seed": seed.hex(), "word_bits": bits, "dim": dim,
                      "keystream": stream.hex(), "words": [int(w) for w in words]})
    return {"description": "key = seed[0:16] (AES-128), counter block i (i = 0, 1, ...) = "
            "seed[16:28] || u32be(i + 2) (the GCM counter layout with a 12-byte IV; seed[28:32] "
            "is unused); keystream = AES(key, block 0) || AES(key, block 1) || ...; word j = "
            "keystream[w*j : w*(j+1)] as a little-endian unsigned integer, w = 4 bytes for "
            "bit widths up to 32 and 8 bytes above.", "cases": cases}


def packing_group() -> Group:
    """Masked vectors as b-bit little-endian bit streams."""
    cases = []
    for i, (bits, dim) in enumerate([(8, 4), (12, 5), (20, 3), (32, 3), (33, 3), (64, 2), (1, 9)]):
        raw = Stream(f"packing/{i}")(8 * dim)
        words = np.frombuffer(raw, dtype="<u8") & np.uint64((1 << bits) - 1)
        typed = words.astype(packing.word_dtype(bits))
        packed = packing.pack(typed, bits)
        assert np.array_equal(packing.unpack(packed, bits, dim), typed)
        cases.append({"bit_width": bits, "words": [int(w) for w in typed], "packed": packed.hex()})
    return {"description": "Coordinate j occupies bits [j*b, (j+1)*b) of a little-endian bit "
            "stream (bit k of the stream is bit k % 8 of byte k // 8), least significant bit of "
            "the coordinate first; the last byte is zero-padded; length ceil(dim*b/8) bytes. A "
            "receiver MUST reject non-zero padding bits and a wrong length.", "cases": cases}


def graph_group() -> Group:
    """SecAgg+ neighbourhoods from a graph seed."""
    cases = []
    for i, (n, degree) in enumerate([(7, 4), (10, 3), (5, 6)]):
        seed = take(f"graph/{i}/seed", 32)
        config = SecAggConfig(threshold=2, max_clients=n, clip=1.0, mode=Mode.SECAGG_PLUS,
                              degree=degree)
        spec = RoundSpec(config=config, round_id=1, num_clients=n, dim=1, graph_seed=seed)
        graph = Graph(spec)
        sort_keys = prg.expand(seed, n, np.uint64)
        ring = sorted(spec.clients, key=lambda c: (int(sort_keys[c - 1]), c))
        cases.append({
            "num_clients": n, "degree": degree, "even_degree": config.even_degree,
            "complete": graph.complete, "graph_seed": seed.hex(),
            "sort_keys": [int(k) for k in sort_keys], "ring": ring,
            "neighbours": {str(c): sorted(graph.neighbours(c)) for c in spec.clients},
        })
    return {"description": "k = degree rounded up to even. If the mode is FULL or k >= n - 1, "
            "every client neighbours every other. Otherwise: sort_keys = the first n 64-bit "
            "words of PRG(graph_seed) (prg group); client c (1-based) has key sort_keys[c - 1]; "
            "ring = the ids sorted by (key, id); the neighbours of the client at ring position p "
            "are those at positions (p +- s) mod n, s = 1..k/2 (the Harary graph H(k, n)).",
            "cases": cases}


def signatures_group() -> Group:
    """Ed25519 signatures over advertisements and survivor lists."""
    identity = Ed25519PrivateKey.from_private_bytes(take("sign/identity", 32))
    public = identity.public_key().public_bytes_raw()
    advert = AdvertiseKeys(sender=2, cipher_pk=take("sign/cipher-pk", 32),
                           mask_pk=take("sign/mask-pk", 32),
                           seed_commitment=take("sign/seed-commitment", 32))
    committed = AdvertiseKeys(sender=2, cipher_pk=advert.cipher_pk, mask_pk=advert.mask_pk,
                              seed_commitment=advert.seed_commitment,
                              graph_commitment=take("sign/graph-commitment", 32))
    cases: list[dict[str, Any]] = []
    for msg in (advert, committed):
        payload = keys.advertisement_payload(msg, round_id=11)
        cases.append({"kind": "advertise_keys", "round_id": 11, "sender": msg.sender,
                      "cipher_pk": msg.cipher_pk.hex(), "mask_pk": msg.mask_pk.hex(),
                      "seed_commitment": msg.seed_commitment.hex(),
                      "graph_commitment": msg.graph_commitment.hex(), "payload": payload.hex(),
                      "signature": keys.sign(identity, payload).hex()})
    graph_seed = take("sign/graph-seed", 32)
    payload = keys.survivors_payload(round_id=11, graph_seed=graph_seed, survivors=[1, 2, 4])
    cases.append({"kind": "survivors", "round_id": 11, "graph_seed": graph_seed.hex(),
                  "survivors": [1, 2, 4], "payload": payload.hex(),
                  "signature": keys.sign(identity, payload).hex()})
    return {"description": "Ed25519 (RFC 8032, pure, deterministic) with identity seed "
            "`identity_private`. advertise_keys payload = b'fedcore-secagg-v1/advertise' || "
            "u64be(round_id) || u32be(sender) || cipher_pk || mask_pk || seed_commitment || "
            "graph_commitment (0 or 32 bytes). survivors payload = b'fedcore-secagg-v1/survivors' "
            "|| u64be(round_id) || graph_seed || u32be(count) || u32be(id) for each survivor in "
            "increasing order.", "identity_private": take("sign/identity", 32).hex(),
            "identity_public": public.hex(), "cases": cases}
