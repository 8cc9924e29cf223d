"""A local emulator of the OpenAI and Runware HTTP APIs, for the demo, the tests and the benchmarks."""

from creditgate.providers.sandbox.server import SandboxServer

__all__ = ["SandboxServer"]
