"""Differential privacy: local DP-SGD (Opacus), accounting and budgets, user-level and
distributed DP for federated averaging.

Import paths are the API: `fedcore.dp.opacus` (training, ε; the only module importing
opacus), `fedcore.dp.accountant`, `fedcore.dp.budget`, `fedcore.dp.user_level`,
`fedcore.dp.distributed`, `fedcore.dp.secagg_noise` (the clients' noisy encoding under secure
aggregation). The user-level strategy is `fedcore.strategy.dp_fedavg`; the aggregator wrappers
live in `fedcore.aggregate.clip` and `fedcore.aggregate.dp_noise`.
"""
