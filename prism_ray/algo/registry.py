"""The policy-loss registry: a loss is one registered function, and a config names it.

A registered loss has the signature of ``ppo_clip_loss``::

    loss_fn(log_probs, old_log_probs, advantages, response_mask, clip: ClipConfig, *,
            rollout_log_probs=None, ref_log_probs=None, logits=None) -> (loss, metrics)

with the shapes of ``algo.policy_loss``. To add one, decorate it with
``@register_policy_loss("name")`` in a module that ``prism_ray.algo`` imports, and set
``loss: name`` on the phase (alignment) or RLVR algorithm in the recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PolicyLossFn = Callable[..., tuple[Any, dict[str, float]]]

POLICY_LOSSES: dict[str, PolicyLossFn] = {}


def register_policy_loss(name: str) -> Callable[[PolicyLossFn], PolicyLossFn]:
    def register(fn: PolicyLossFn) -> PolicyLossFn:
        if name in POLICY_LOSSES and POLICY_LOSSES[name] is not fn:
            raise ValueError(f"policy loss {name!r} is already registered")
        POLICY_LOSSES[name] = fn
        return fn

    return register


def policy_loss_fn(name: str) -> PolicyLossFn:
    try:
        return POLICY_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown policy loss {name!r}; registered: "
                         f"{', '.join(sorted(POLICY_LOSSES))}") from None
