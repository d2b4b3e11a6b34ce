"""Local-training math below every trainer: the client SDK (`fedcore.client`), DP-SGD
(`fedcore.dp.opacus`) and the simulation's kernels (`fedcore.sim.backends`) all import it, and
it imports none of them."""
