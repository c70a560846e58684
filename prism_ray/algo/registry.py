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

from prism_ray.registry import Registry

PolicyLossFn = Callable[..., tuple[Any, dict[str, float]]]

POLICY_LOSSES: Registry[PolicyLossFn] = Registry("policy loss")
register_policy_loss = POLICY_LOSSES.register
policy_loss_fn = POLICY_LOSSES.lookup
