"""When a signed round protects every honest client against a lying coordinator.

The adversary is the coordinator: it relays every message and may withhold, delay, reorder
or tailor what each client is told (share relays, survivor and dropped lists, per client and
per phase). It cannot forge a client's signature or read a sealed share. It wins against an
honest client u if it obtains u's self-mask seed s_u together with every pairwise mask seed
s_uw of the neighbours w whose shares u received (R_u, the ones u masked with): then it strips
u's masks and reads u's input. s_uw follows from the mask key sk_u or sk_w; each secret is
Shamir-shared with threshold t among its owner's holders H(.) (the owner and its k
neighbours), and an honest holder answers one unmasking request, releasing per owner either a
seed share or a key share, never both.

**What an honest client enforces** (`fedcore.secagg.client`), with L_h the survivor list that
holder h signed in the consistency check (bound to the round and to the graph seed):

1. it signs a list only if it survives in it and at least t of its own holders do;
2. it masks only after receiving shares from at least t-1 neighbours (|R_u| >= t-1);
3. it releases a share of owner w (a seed share if w survives in L_h, a key share if not)
   only if at least t holders of w, each a survivor in L_h, validly signed L_h itself.

**The condition.** Let U be the largest |H(u) u H(w)| over neighbours u, w: n when every
client neighbours every other (FULL), and min(n, 3k/2 + 1) for the Harary graph of degree k
(`fedcore.secagg.graph`: neighbours at ring distance k/2 share only k/2 + 1 holders). If

    2t > U        (and t > 2n/3 when the graph is complete, the rule of Bonawitz et al.)

then no coordinator strategy obtains any honest client's input. Proof: two different lists
each signed by t holders of one owner need 2t <= k + 1 < U distinct signers, so every honest
release about an owner w follows one list L*_w. If L*_u drops u, no seed share of u is
released. Otherwise the t signers of L*_u (all in H(u), all survivors in it) cannot all lie
outside R_u, since |H(u) - R_u| <= k + 2 - t < t; so some w in R_u survives in L*_u. Its key
needs a list L*_w that drops w, signed by t holders of w; the signers of L*_u and of L*_w are
disjoint (each signs once) and lie in H(u) u H(w), which needs 2t <= U. So s_uw stays hidden.

With c clients colluding with the coordinator inside H(u) u H(w) the same count gives
security while 2t > U + c: each threshold tolerates c < 2t - U colluders there. What is
not claimed: a lying coordinator still chooses who counts as a survivor (it can ignore any
client), so the sum it learns is over survivors of its choosing.

The graph itself is drawn from contributions every participant commits to before any is
revealed (`fedcore.secagg.keys.graph_seed`), and the seed is bound into every share and
signature, so neither the coordinator nor a minority of clients chooses neighbourhoods, and
clients shown different graphs cannot be played against each other.
"""

from __future__ import annotations

from fedcore.secagg.config import RoundSpec, SecAggConfig
from fedcore.secagg.errors import SecAggError


class UnsafeRound(SecAggError, ValueError):
    """The round's parameters would let a lying coordinator read an honest client's input."""


def holder_union(config: SecAggConfig, num_clients: int) -> int:
    """U: the most clients holding shares of either of two neighbours."""
    if config.complete_for(num_clients):
        return num_clients
    return min(num_clients, config.even_degree + 1 + config.even_degree // 2)


def least_signed_threshold(config: SecAggConfig, num_clients: int) -> int:
    """The least t a signed round may use: 2t > U, and t > 2n/3 when the graph is complete."""
    union = holder_union(config, num_clients)
    if config.complete_for(num_clients):
        return min(num_clients, 2 * num_clients // 3 + 1)
    holders = config.even_degree + 1
    return min(holders, max(union // 2 + 1, 2 * holders // 3 + 1))


def tolerated_colluders(config: SecAggConfig, num_clients: int) -> int:
    """How many colluding clients within two neighbourhoods the round's threshold tolerates."""
    return max(0, 2 * config.threshold - holder_union(config, num_clients) - 1)


def check_signed(spec: RoundSpec) -> None:
    """Refuse a signed round whose threshold is below `least_signed_threshold`.

    Raises:
        UnsafeRound: naming the threshold needed.
    """
    config, n = spec.config, spec.num_clients
    needed = least_signed_threshold(config, n)
    if config.threshold < needed:
        shape = ("every client neighbours every other" if config.complete_for(n)
                 else f"degree {config.even_degree}, two neighbourhoods hold up to "
                      f"{holder_union(config, n)} clients")
        raise UnsafeRound(
            f"threshold t={config.threshold} is too low for a signed round of {n} clients "
            f"({shape}): a lying coordinator could rebuild one client's masks; "
            f"it needs t >= {needed} (see fedcore.secagg.safety)"
        )
