"""Rollout engines behind one interface (``base.RolloutEngine``): HF generate and vLLM."""
