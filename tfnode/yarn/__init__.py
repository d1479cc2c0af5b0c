"""YARN mode: what each container of a `tfoy submit` job runs beside TensorFlow.

bootstrap.py is the container's entry point (`python -m tfnode.yarn.bootstrap`): it supervises the task's TF
process, runs the start-up rendezvous of barrier.py in the skein key-value store, and reports the outcome the
client watches; tensorboard_role.py is the tensorboard role. What the client and these modules agree on (the
job runtime, env names, key layout, roles) is in tfnode/contract.py.
"""
