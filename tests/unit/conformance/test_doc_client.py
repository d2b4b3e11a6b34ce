"""A secure-aggregation client written from docs/protocol.md section 8 alone (hashlib, plain
ints and the `cryptography` primitives; nothing from fedcore) reproduces every message each
client sends in the vector rounds, given the round's recorded random draws and uniforms."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedcore.conformance.vectors import load

P = 2**31 - 1
DOMAIN = b"fedcore-secagg-v1"
LIMBS = 9
VECTORS = load()
ROUNDS = sorted(VECTORS["rounds"])
Fields = dict[str, Any]


def u32(v: int) -> bytes:
    return v.to_bytes(4, "big")


def u64(v: int) -> bytes:
    return v.to_bytes(8, "big")


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def public(sk: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(sk).public_key().public_bytes_raw()


def agree(sk: bytes, pk: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(sk).exchange(X25519PublicKey.from_public_bytes(pk))


def hkdf(shared: bytes, info: bytes) -> bytes:
    prk = hmac.digest(bytes(32), shared, "sha256")
    return hmac.digest(prk, info + b"\x01", "sha256")


def limbs(secret: bytes) -> list[int]:
    value = int.from_bytes(secret, "little")
    return [(value >> (30 * i)) & (2**30 - 1) for i in range(LIMBS)]


def prg(seed: bytes, dim: int, width: int) -> list[int]:
    iv = seed[16:28] + u32(2)
    stream = Cipher(algorithms.AES(seed[:16]), modes.CTR(iv)).encryptor().update(bytes(dim * width))
    return [int.from_bytes(stream[j * width:(j + 1) * width], "little") for j in range(dim)]


class ByteStream:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        assert len(out) == n, "the recorded draws ran out"
        self.pos += n
        return out


def elements(stream: ByteStream, count: int) -> list[int]:
    """Section 8.5: u32le words & 0x7fffffff, positions equal to p redrawn together, in order."""
    raw = stream.take(4 * count)
    out = [int.from_bytes(raw[4 * i:4 * i + 4], "little") & P for i in range(count)]
    bad = [i for i, v in enumerate(out) if v == P]
    while bad:
        raw = stream.take(4 * len(bad))
        for k, i in enumerate(bad):
            out[i] = int.from_bytes(raw[4 * k:4 * k + 4], "little") & P
        bad = [i for i in bad if out[i] == P]
    return out


class DocClient:
    """One client of one round, following section 8 step by step."""

    def __init__(self, rnd: dict[str, Any], me: int) -> None:
        self.setup, self.me = rnd["setup"], me
        self.r, self.t = self.setup["round_id"], self.setup["threshold"]
        mine = rnd["clients"][str(me)]
        draws = [h(d) for d in mine["random_draws"]]
        self.signed = bool(self.setup["participants"])
        self.committed = self.signed and self.setup["mode"] == "SECAGG_PLUS" and (
            self.setup["degree"] + self.setup["degree"] % 2 < self.setup["num_clients"] - 1)
        self.cipher_sk, self.mask_sk, self.seed = draws[0], draws[1], draws[2]
        self.nonce = draws[3] if self.committed else b""
        self.coefficients = ByteStream(b"".join(draws[4 if self.committed else 3:]))
        self.identity = (Ed25519PrivateKey.from_private_bytes(h(mine["identity_private"]))
                         if self.signed else None)
        self.words = rnd["inputs"][str(me)]["words"]
        self.graph_seed = h(self.setup["graph_seed"])
        self.plaintexts: dict[int, bytes] = {}

    def sign(self, payload: bytes) -> str:
        return self.identity.sign(payload).hex() if self.identity else ""

    def advertise(self) -> Fields:
        commitment = b""
        if self.committed:
            commitment = hashlib.sha256(DOMAIN + b"/graph-commitment" + u64(self.r)
                                        + u32(self.me) + self.nonce).digest()
        seed_commitment = hashlib.sha256(DOMAIN + b"/seed" + u64(self.r) + u32(self.me)
                                         + self.seed).digest()
        cipher_pk, mask_pk = public(self.cipher_sk), public(self.mask_sk)
        payload = (DOMAIN + b"/advertise" + u64(self.r) + u32(self.me) + cipher_pk + mask_pk
                   + seed_commitment + commitment)
        return {"sender": self.me, "cipher_pk": cipher_pk.hex(), "mask_pk": mask_pk.hex(),
                "seed_commitment": seed_commitment.hex(), "signature": self.sign(payload),
                "graph_commitment": commitment.hex()}

    def handle(self, kind: str, msg: Fields) -> Fields:
        return getattr(self, f"on_{kind}")(msg)

    def on_GraphCommitments(self, msg: Fields) -> Fields:
        return {"sender": self.me, "nonce": self.nonce.hex()}

    def on_KeyList(self, msg: Fields) -> Fields:
        if self.committed:
            reveals = sorted((r["sender"], h(r["nonce"])) for r in msg["reveals"])
            pre = DOMAIN + b"/graph-seed" + u64(self.r) + u32(len(reveals))
            self.graph_seed = hashlib.sha256(
                pre + b"".join(u32(i) + n for i, n in reveals)).digest()
        xs = sorted(k["sender"] for k in msg["keys"])
        peers = {k["sender"]: k for k in msg["keys"] if k["sender"] != self.me}
        self.share_keys, self.mask_seeds = {}, {}
        for v, k in peers.items():
            tail = u64(self.r) + u32(min(self.me, v)) + u32(max(self.me, v))
            self.share_keys[v] = hkdf(agree(self.cipher_sk, h(k["cipher_pk"])),
                                      DOMAIN + b"/share-key" + tail)
            self.mask_seeds[v] = hkdf(agree(self.mask_sk, h(k["mask_pk"])),
                                      DOMAIN + b"/mask-seed" + tail)
        secret = limbs(self.seed) + limbs(self.mask_sk)
        drawn = elements(self.coefficients, (self.t - 1) * 2 * LIMBS)
        for x in xs:
            values = [(c + sum(drawn[(j - 1) * 2 * LIMBS + l] * x**j for j in range(1, self.t)))
                      % P for l, c in enumerate(secret)]
            self.plaintexts[x] = b"".join(v.to_bytes(4, "little") for v in values)
        shares = []
        for v in sorted(peers):
            ad = DOMAIN + b"/share" + u64(self.r) + self.graph_seed + u32(self.me) + u32(v)
            sealed = AESGCM(self.share_keys[v]).encrypt(self.me.to_bytes(12, "big"),
                                                        self.plaintexts[v], ad)
            shares.append({"sender": self.me, "receiver": v, "ciphertext": sealed.hex()})
        return {"sender": self.me, "shares": shares}

    def on_ShareRelay(self, msg: Fields) -> Fields:
        self.received: dict[int, bytes] = {}
        for s in msg["shares"]:
            v = s["sender"]
            ad = DOMAIN + b"/share" + u64(self.r) + self.graph_seed + u32(v) + u32(self.me)
            self.received[v] = AESGCM(self.share_keys[v]).decrypt(
                v.to_bytes(12, "big"), h(s["ciphertext"]), ad)
        bits, dim = self.setup["bit_width"], self.setup["dim"]
        width = 4 if bits <= 32 else 8
        y = [w + m for w, m in zip(self.words, prg(self.seed, dim, width), strict=True)]
        for v in self.received:
            sign = 1 if self.me < v else -1
            y = [a + sign * m for a, m in zip(y, prg(self.mask_seeds[v], dim, width), strict=True)]
        packed = sum((a % 2**bits) << (bits * j) for j, a in enumerate(y))
        return {"payload": packed.to_bytes((dim * bits + 7) // 8, "little").hex()}

    def on_ConsistencyRequest(self, msg: Fields) -> Fields:
        ids = msg["survivors"]
        payload = (DOMAIN + b"/survivors" + u64(self.r) + self.graph_seed + u32(len(ids))
                   + b"".join(u32(i) for i in ids))
        return {"sender": self.me, "signature": self.sign(payload)}

    def on_UnmaskRequest(self, msg: Fields) -> Fields:
        held = {**self.received, self.me: self.plaintexts[self.me]}
        return {"sender": self.me,
                "seed_shares": [{"owner": o, "share": held[o][:36].hex()}
                                for o in msg["survivors"]],
                "key_shares": [{"owner": o, "share": held[o][36:].hex()} for o in msg["dropped"]]}


@pytest.mark.parametrize("name", ROUNDS)
def test_a_client_written_from_the_doc_sends_what_the_reference_sent(name: str) -> None:
    rnd = VECTORS["rounds"][name]
    compared = 0
    for me in range(1, rnd["setup"]["num_clients"] + 1):
        client = DocClient(rnd, me)
        inbox = [e for e in rnd["transcript"] if e["direction"] == "server->client"
                 and e["client"] == me and e["type"] != "SecAggSetup"]
        sent = [e for e in rnd["transcript"] if e["direction"] == "client->server"
                and e["client"] == me]
        produced = [client.advertise()] + [client.handle(m["type"], m["fields"]) for m in inbox]
        for mine, theirs in zip(produced, sent, strict=False):
            expected = {"payload": theirs["payload"]} if "payload" in theirs else theirs["fields"]
            assert mine == expected, f"client {me}: {theirs['type']}"
            compared += 1
    assert compared == sum(e["direction"] == "client->server" for e in rnd["transcript"])


def test_this_file_imports_nothing_of_fedcore_but_the_vectors() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]

    assert [line for line in imports if "fedcore" in line] == [
        "from fedcore.conformance.vectors import load"]
