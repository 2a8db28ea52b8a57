"""One error root for everything harden expects to go wrong.

Every expected failure (bad input, unreachable cluster, stale plan, held lock) is a `HardenError`
carrying a one-line summary, where it happened (file, line, field, or the cluster context) and a
hint on how to fix it. The CLI turns these into a message and exit code 1 in one place; anything
that is not a `HardenError` is a bug and is reported as such, with its traceback.

Input problems are accumulated into a `Diagnostics` error so a user sees every problem at once,
the way `terraform validate` does, instead of fixing them one run at a time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnostic:
    summary: str
    file: str | None = None
    line: int | None = None
    field: str | None = None
    hint: str | None = None

    def location(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file + (f":{self.line}" if self.line else ""))
        if self.field:
            parts.append(f"field {self.field}")
        return ", ".join(parts)

    def render(self) -> str:
        loc = self.location()
        text = f"{loc}: {self.summary}" if loc else self.summary
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class HardenError(Exception):
    """Root of every expected failure. `exit_code` is what the CLI returns."""

    exit_code = 1

    def __init__(self, summary: str, *, hint: str | None = None, file: str | None = None,
                 line: int | None = None, field: str | None = None) -> None:
        super().__init__(summary)
        self.diagnostic = Diagnostic(summary, file=file, line=line, field=field, hint=hint)

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return [self.diagnostic]

    def render(self) -> str:
        return self.diagnostic.render()


class Diagnostics(HardenError):
    """Several input problems reported together."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__(f"{len(diagnostics)} problem(s) in the input")
        self._diagnostics = list(diagnostics)

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return self._diagnostics

    def render(self) -> str:
        return "\n".join(f"Error: {d.render()}" for d in self._diagnostics)


class InputError(HardenError):
    """A profile, stack, parameter or plan file is wrong."""


class TargetNotFound(InputError):
    """A profile patches an object that is not in the cluster or snapshot."""


class ClusterError(HardenError):
    """The Kubernetes API refused or failed a request (translated once, in `harden.kube`).

    `retryable`: sending the same request again may succeed (429, 5xx, a lost connection).
    `retry_after`: seconds the server asked to wait first (its Retry-After header).
    `outcome_unknown`: the request may have been carried out although no answer came back.
    """

    def __init__(self, summary: str, *, status: int | None = None, hint: str | None = None,
                 retryable: bool = False, retry_after: float | None = None, outcome_unknown: bool = False) -> None:
        super().__init__(summary, hint=hint)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown


class Unreachable(ClusterError):
    pass


class TimedOut(Unreachable):
    """No answer within the request timeout (not retried: the timeout bounds one request)."""


class Untrusted(ClusterError):
    """The server's TLS certificate is not trusted by the kubeconfig's CA: a trust problem, not an outage."""


class Forbidden(ClusterError):
    pass


class NotFound(ClusterError):
    pass


class Conflict(ClusterError):
    pass


class StalePlan(HardenError):
    """A saved plan no longer matches the cluster or the state it was made against."""


class LockHeld(HardenError):
    """Another harden process holds the state lock."""


class ExpectationFailed(HardenError):
    """The plan would break a flow or permission a profile declares must hold."""
