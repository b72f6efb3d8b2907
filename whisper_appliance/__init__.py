"""The ``whisper-appliance`` command: run one service, or the whole trio with ``up``."""
