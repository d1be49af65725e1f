"""Replay buffers."""

from pwm_agent.buffers.sequence import NoValidWindowError, SequenceReplayBuffer, WindowBatch

__all__ = ["NoValidWindowError", "SequenceReplayBuffer", "WindowBatch"]
