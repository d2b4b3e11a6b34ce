"""A lying coordinator that drives real `SecAggClient` machines to read one client's input.

It follows the protocol where lying gains nothing (keys, share encryption, the committed graph)
and lies where the reviewed attacks did: it withholds shares from the victim so that the victim
masks with as few neighbours as it accepts, shows each client a survivor list of its choosing
(one for all, one per holder, or groups that disagree about the victim), pads every list with
signatures of clients far from the victim, and asks each holder for exactly the shares it wants,
trying smaller requests when a client refuses (a refusal changes nothing, so it may try again).
It wins if the shares it collected rebuild the victim's self-mask seed and every pairwise seed
the victim masked with: then it strips the victim's masks and compares with the victim's input.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedcore.secagg import keys, recovery
from fedcore.secagg.client import SecAggClient
from fedcore.secagg.config import Mode, RoundSpec, SecAggConfig
from fedcore.secagg.errors import SecAggError
from fedcore.secagg.graph import Graph
from fedcore.secagg.messages import (
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShares,
    GraphCommitment,
    GraphCommitments,
    GraphReveal,
    KeyList,
    MaskedInput,
    ShareRelay,
    UnmaskRequest,
    UnmaskShares,
)
from fedcore.secagg.packing import unpack, word_dtype
from fedcore.secagg.prg import MaskExpander

STRATEGIES = ("single", "tailored", "split", "spread", "random")
ClientFactory = Callable[..., SecAggClient]


@dataclass(frozen=True, slots=True)
class Setting:
    """One round the coordinator attacks."""

    n: int
    threshold: int
    signed: bool
    mode: Mode = Mode.FULL
    degree: int = 0

    def spec(self, identities: tuple[bytes, ...] | None) -> RoundSpec:
        config = SecAggConfig(threshold=self.threshold, max_clients=self.n, clip=1.0,
                              mode=self.mode, degree=self.degree)
        return RoundSpec(config=config, round_id=7, num_clients=self.n, dim=8,
                         graph_seed=os.urandom(32), identities=identities)


@dataclass(slots=True)
class Outcome:
    """What the attack got."""

    refused_setup: bool = False
    recovered: bool = False
    seed_shares: int = 0  # of the victim's self-mask seed
    pair_seeds: int = 0  # pairwise seeds of the victim the coordinator rebuilt
    masked_with: int = 0  # neighbours the victim masked with
    refusals: list[str] = field(default_factory=list)


class LyingCoordinator:
    """Runs one attacked round; `attack(strategy, rng)` returns the outcome."""

    def __init__(self, setting: Setting, *, client: ClientFactory = SecAggClient) -> None:
        self.setting = setting
        signed = setting.signed
        self.identity = ({c: Ed25519PrivateKey.generate() for c in range(1, setting.n + 1)}
                         if signed else {})
        publics = tuple(self.identity[c].public_key().public_bytes_raw()
                        for c in range(1, setting.n + 1)) if signed else None
        self.spec = setting.spec(publics)
        self.client_factory = client
        self.inputs = {c: np.random.default_rng(c).integers(0, self.spec.config.levels + 1, 8)
                       for c in self.spec.clients}

    def attack(self, strategy: str, rng: random.Random) -> Outcome:
        """Run the round under `strategy` (one of STRATEGIES) against a random victim."""
        outcome = Outcome()
        try:
            clients = {c: self.client_factory(self.spec, c, identity_key=self.identity.get(c))
                       for c in self.spec.clients}
        except ValueError:
            outcome.refused_setup = True
            return outcome
        graph, adverts = self._keys(clients)
        victim = rng.choice(list(self.spec.clients))
        relayed = self._share(clients, graph, victim, rng, spread_out=strategy == "spread")
        outcome.masked_with = len(relayed[victim])
        masked = {c: m.mask_input(self.inputs[c]) for c, m in clients.items()}
        views = self._views(strategy, graph, victim, relayed, rng)
        signatures = self._consistency(clients, views, outcome) if self.spec.signed else {}
        shares = self._unmask(clients, graph, victim, relayed, views, signatures, outcome)
        self._try_recover(victim, relayed[victim], masked[victim], adverts, shares, outcome)
        return outcome

    # -- honest-looking phases ---------------------------------------------------------------

    def _keys(self, clients: dict[int, SecAggClient]) -> tuple[Graph, dict[int, AdvertiseKeys]]:
        adverts = {c: m.advertise_keys() for c, m in clients.items()}
        seed = self.spec.graph_seed
        reveals: tuple[GraphReveal, ...] = ()
        if self.spec.committed_graph:  # the nonces are out of its hands: it can only relay them
            commitments = tuple(GraphCommitment(sender=c, commitment=a.graph_commitment)
                                for c, a in sorted(adverts.items()))
            reveals = tuple(m.handle(GraphCommitments(recipient=c, commitments=commitments))[0]
                            for c, m in sorted(clients.items()))  # type: ignore[misc]
            seed = keys.graph_seed(round_id=self.spec.round_id,
                                   nonces=tuple((r.sender, r.nonce) for r in reveals))
        graph = Graph(self.spec, seed)
        self._encrypted = {
            c: m.handle(KeyList(recipient=c, keys=tuple(adverts[p] for p in
                                                        sorted(graph.holders(c))),
                                reveals=reveals))[0]
            for c, m in clients.items()
        }
        return graph, adverts

    def _share(self, clients: dict[int, SecAggClient], graph: Graph, victim: int,
               rng: random.Random, *, spread_out: bool) -> dict[int, frozenset[int]]:
        """Relay all shares, but to the victim only from as few neighbours as it accepts:
        random ones, or (`spread_out`) those sharing the fewest holders with it."""
        fewest = max(0, self.spec.config.threshold - 1)
        neighbours = sorted(graph.neighbours(victim))
        count = min(len(neighbours), fewest if spread_out else rng.choice([fewest, fewest + 1]))
        if spread_out:
            mine = graph.holders(victim)
            neighbours.sort(key=lambda w: (len(graph.holders(w) & mine), rng.random()))
            keep = frozenset(neighbours[:count])
        else:
            keep = frozenset(rng.sample(neighbours, k=count))
        relayed: dict[int, frozenset[int]] = {}
        for c, machine in clients.items():
            senders = keep if c == victim else graph.neighbours(c)
            inbox = tuple(s for sender in sorted(senders)
                          for s in self._sealed(sender).shares if s.receiver == c)
            machine.handle(ShareRelay(recipient=c, shares=inbox))
            relayed[c] = frozenset(senders)
        return relayed

    def _sealed(self, sender: int) -> EncryptedShares:
        msg = self._encrypted[sender]
        assert isinstance(msg, EncryptedShares)
        return msg

    # -- the lies --------------------------------------------------------------------------

    def _views(self, strategy: str, graph: Graph, victim: int, relayed: dict[int, frozenset[int]],
               rng: random.Random) -> dict[int, frozenset[int]]:
        """Which clients each client is told dropped (it is never told it dropped itself)."""
        clients = list(self.spec.clients)
        victim_set = relayed[victim]
        near = set().union(*(graph.holders(w) for w in graph.holders(victim)))
        far = [c for c in clients if c not in near]
        rng.shuffle(far)
        views = {c: victim_set - {c} for c in clients}
        groups: list[tuple[frozenset[int], list[int]]] = []
        if strategy == "tailored":  # each neighbour sees the others dropped, the victim alive
            groups = [(victim_set - {w}, [w]) for w in sorted(victim_set)]
        elif strategy == "split":  # two groups disagree about the victim itself
            holders = sorted(graph.holders(victim) - {victim})
            rng.shuffle(holders)
            half = len(holders) // 2
            groups = [(frozenset({victim}), holders[:half]),
                      (frozenset(), holders[half:] + [victim])]
        elif strategy == "spread":  # each neighbour dropped in the view of t of its holders
            groups = self._spread(graph, victim, victim_set, rng)
            views = dict.fromkeys(clients, frozenset())
        elif strategy == "random":
            for w in sorted(victim_set | {victim}):
                dead_to = [h for h in graph.holders(w) if h != w and rng.random() < 0.5]
                groups.append((frozenset({w}) | frozenset(rng.sample(sorted(victim_set),
                                                                     k=len(victim_set) // 2)),
                               dead_to))
        pad = iter(far)
        for dead, members in groups:
            for m in members:
                views[m] = dead - {m}
            for extra in itertools.islice(pad, self.spec.config.threshold):
                views[extra] = dead - {extra}  # far clients sign anything that lists them
        return views

    def _spread(self, graph: Graph, victim: int, victim_set: frozenset[int],
                rng: random.Random) -> list[tuple[frozenset[int], list[int]]]:
        """Drop each neighbour the victim masked with in the views of t of its holders, each
        holder keeping t survivors among its own holders; group holders by view."""
        threshold = self.spec.config.threshold
        budget = {h: len(graph.holders(h)) - threshold for h in self.spec.clients}
        dead: dict[int, set[int]] = {}
        contention = {h: len(graph.holders(h) & victim_set) for h in self.spec.clients}
        order = sorted(victim_set, key=lambda w: (len(graph.holders(w) - graph.holders(victim)),
                                                  rng.random()))
        for w in order:
            candidates = [h for h in graph.holders(w) if h not in (w, victim) and budget[h] > 0]
            candidates.sort(key=lambda h: (contention[h], -budget[h], rng.random()))
            for h in candidates[:threshold]:
                dead.setdefault(h, set()).add(w)
                budget[h] -= 1
        by_view: dict[frozenset[int], list[int]] = {}
        for h, gone in dead.items():
            by_view.setdefault(frozenset(gone), []).append(h)
        return sorted(by_view.items(), key=lambda item: -len(item[1]))

    def _consistency(self, clients: dict[int, SecAggClient], views: dict[int, frozenset[int]],
                     outcome: Outcome) -> dict[frozenset[int], list[ConsistencySignature]]:
        signed: dict[frozenset[int], list[ConsistencySignature]] = {}
        for c, machine in clients.items():
            survivors = tuple(x for x in self.spec.clients if x not in views[c])
            try:
                sig = machine.handle(ConsistencyRequest(recipient=c, survivors=survivors))[0]
            except SecAggError as err:
                outcome.refusals.append(str(err))
                continue
            assert isinstance(sig, ConsistencySignature)
            signed.setdefault(views[c], []).append(sig)
        return signed

    def _unmask(self, clients: dict[int, SecAggClient], graph: Graph, victim: int,
                relayed: dict[int, frozenset[int]], views: dict[int, frozenset[int]],
                signatures: dict[frozenset[int], list[ConsistencySignature]], outcome: Outcome
                ) -> list[UnmaskShares]:
        wanted_keys = relayed[victim] | {victim}
        got: list[UnmaskShares] = []
        for h, machine in clients.items():
            if h not in graph.holders(victim) and not graph.holders(h) & wanted_keys:
                continue
            holders = graph.holders(h)
            alive = [x for x in sorted(holders) if x not in views[h]]
            dead = [x for x in sorted(holders & views[h]) if x in relayed[h]]
            for survivors, dropped in self._requests(h, victim, alive, dead, wanted_keys):
                request = UnmaskRequest(recipient=h, survivors=survivors, dropped=dropped,
                                        signatures=tuple(signatures.get(views[h], ())))
                try:
                    reply = machine.handle(request)[0]
                except SecAggError as err:
                    outcome.refusals.append(str(err))
                    continue
                assert isinstance(reply, UnmaskShares)
                got.append(reply)
                break
        return got

    def _requests(self, h: int, victim: int, alive: list[int], dead: list[int],
                  wanted: frozenset[int]) -> Iterable[tuple[tuple[int, ...], tuple[int, ...]]]:
        """The requests to try on holder h, greediest first (a refusal changes nothing)."""
        threshold = self.spec.config.threshold
        useful_dead = [d for d in dead if d in wanted]
        core = [x for x in (h, victim) if x in alive]
        others = [x for x in alive if x not in core]
        survivors = tuple(sorted(core + others[: max(0, threshold - len(core))]))
        yield tuple(alive), tuple(dead)
        yield survivors, tuple(useful_dead)
        for d in useful_dead:
            yield survivors, (d,)
        yield survivors, ()

    # -- what it learnt ----------------------------------------------------------------------

    def _try_recover(self, victim: int, masked_with: frozenset[int], masked: MaskedInput,
                     adverts: dict[int, AdvertiseKeys], shares: list[UnmaskShares],
                     outcome: Outcome) -> None:
        threshold, round_id = self.spec.config.threshold, self.spec.round_id
        seeds: dict[int, dict[int, bytes]] = {}
        mask_keys: dict[int, dict[int, bytes]] = {}
        for msg in shares:
            for s in msg.seed_shares:
                seeds.setdefault(s.owner, {})[msg.sender] = s.share
            for s in msg.key_shares:
                mask_keys.setdefault(s.owner, {})[msg.sender] = s.share
        outcome.seed_shares = len(seeds.get(victim, {}))
        rebuilt = {o: by for o, by in mask_keys.items() if len(by) >= threshold}
        secret_keys = recovery.reconstruct_all(rebuilt, threshold=threshold)
        pair_seeds = {}
        for w in masked_with:
            if victim in secret_keys:
                private, public = secret_keys[victim], adverts[w].mask_pk
            elif w in secret_keys:
                private, public = secret_keys[w], adverts[victim].mask_pk
            else:
                continue
            shared = keys.agree(X25519PrivateKey.from_private_bytes(private), public)
            pair_seeds[w] = keys.derive_mask_seed(shared, round_id=round_id, a=victim, b=w)
        outcome.pair_seeds = len(pair_seeds)
        if outcome.seed_shares < threshold or len(pair_seeds) < len(masked_with):
            return
        seed = recovery.reconstruct_all({victim: seeds[victim]}, threshold=threshold)[victim]
        bits = self.spec.config.bit_width
        acc = unpack(masked.data, bits, self.spec.dim).astype(word_dtype(bits))
        expander = MaskExpander(self.spec.dim, acc.dtype)
        expander.subtract(acc, seed)
        for w, pair in pair_seeds.items():
            (expander.subtract if victim < w else expander.add)(acc, pair)
        outcome.recovered = bool(np.array_equal(acc, self.inputs[victim].astype(acc.dtype)))
