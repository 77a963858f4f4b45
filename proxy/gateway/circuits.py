"""Per-provider circuit breakers, in this process's memory: after N consecutive failures a provider is
skipped for T seconds, then let through again (half-open), and one more failure opens it at once."""

import time

from proxy.catalog.snapshot import ProviderInfo


class Circuits:
    """Per-provider circuit breakers: after N consecutive failures a provider is skipped for T seconds."""

    def __init__(self) -> None:
        self._failures: dict[int, int] = {}
        self._open_until: dict[int, float] = {}
        self._names: dict[int, str] = {}  # of providers that ever failed, for the metrics

    def is_open(self, provider: ProviderInfo) -> bool:
        until = self._open_until.get(provider.id)
        if until is None:
            return False
        if time.monotonic() >= until:
            # Half-open: let traffic through; one more failure re-opens it at once.
            del self._open_until[provider.id]
            self._failures[provider.id] = provider.circuit_threshold - 1
            return False
        return True

    def success(self, provider: ProviderInfo) -> None:
        if self._failures.get(provider.id):
            self._failures[provider.id] = 0

    def failure(self, provider: ProviderInfo) -> None:
        count = self._failures.get(provider.id, 0) + 1
        self._names[provider.id] = provider.name
        self._failures[provider.id] = count
        if count >= provider.circuit_threshold:
            self._open_until[provider.id] = time.monotonic() + provider.circuit_cooldown

    def state(self) -> dict[int, str]:
        now = time.monotonic()
        return {pid: "open" if until > now else "half-open" for pid, until in self._open_until.items()}

    def named_states(self) -> dict[str, str]:
        """Each provider that ever failed here, by name: ``open``, ``half-open`` or ``closed``."""
        states = self.state()
        return {name: states.get(pid, "closed") for pid, name in self._names.items()}
