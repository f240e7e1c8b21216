"""The trainer's exceptions: one base, narrow subclasses, messages that name the fix."""


class TrainerError(Exception):
    """Base class of every error the trainer raises on purpose."""


class ConfigError(TrainerError):
    """A setting is invalid; the message names the setting, the bad value and the fix."""


class CheckpointError(TrainerError):
    """A checkpoint cannot be written or read (and no older good one exists)."""


class Stopped(TrainerError):
    """A stop (SIGTERM/SIGINT) came while waiting to start: nothing ran, nothing to save."""
