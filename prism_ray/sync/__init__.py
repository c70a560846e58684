"""Weight sync learner → rollout workers: bucketed, versioned, over a broadcast group."""
