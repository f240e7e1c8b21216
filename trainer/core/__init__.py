"""The pure learning core: ids, numbers and tensors in; tensors and figures out.

Vocabulary, popularity and sampler, negatives, loss, gravity, tables, model, features, history,
the step, evaluation and scoring. It imports torch, numpy and river, and nothing of Kafka, Redis,
files or threads: the daemon (`trainer.daemon`) wires it to the world.
"""
