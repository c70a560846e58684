"""The policy/discriminator learner machinery: DeepSpeed engine, micro-batching, weights."""
