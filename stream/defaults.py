"""Defaults of the Kafka side, in a module that imports no Kafka client.

`stream.kafka` uses them and the trainer's options (`trainer.daemon.settings`) show them, so the
library and the command line cannot drift apart, and reading them costs no kafka-python import.
"""

# The local broker's first JoinGroup waits session_timeout/2: with Kafka's 45 s default a join
# takes ~23 s (DESIGN.md, "The local broker").
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 1000
MAX_POLL_INTERVAL_MS = 300_000
TOPIC_PARTITIONS = 4  # of a topic recstream has to create
