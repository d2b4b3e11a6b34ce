"""How SCAFFOLD's control variates travel inside protocol v1's ordinary model and results.

The global model of a SCAFFOLD run carries, beside each controlled tensor `w`, the server's
control variate `c` for it as an extra tensor named `CONTROL_PREFIX + "w"` (same shape and
dtype). Clients download it with the model, and send back, under the same names, the change
of their own control variate, `c_i+ - c_i`, beside their model update `y - x`. So the
variates ride the existing download, result validation, aggregation (plain, secure or
compressed) and checkpoints unchanged: nothing new is on the wire.
"""

from __future__ import annotations

from fedcore.protocol.params import Array, Params

CONTROL_PREFIX = "scaffold.c/"
"""Name prefix of a control-variate tensor; the rest of the name is the model tensor's."""


def is_control(name: str) -> bool:
    """Whether `name` is a control-variate tensor's name."""
    return name.startswith(CONTROL_PREFIX)


def control_name(name: str) -> str:
    """The name of model tensor `name`'s control variate."""
    return CONTROL_PREFIX + name


def has_control(names: Params | list[str] | tuple[str, ...]) -> bool:
    """Whether a model (or a list of names) carries any control variate (a SCAFFOLD run)."""
    return any(is_control(n) for n in names)


def split_control(params: Params) -> tuple[dict[str, Array], dict[str, Array]]:
    """`(model, control)`: the model's own tensors, and the control variates keyed by the name
    of the model tensor they belong to."""
    model: dict[str, Array] = {}
    control: dict[str, Array] = {}
    for name, value in params.items():
        if is_control(name):
            control[name[len(CONTROL_PREFIX):]] = value
        else:
            model[name] = value
    return model, control
