"""Impact analysis of a plan: who can do what (RBAC) and who can reach whom (NetworkPolicy).

Both analyses are pure functions over plain Kubernetes object dicts (as
``kubectl get -o yaml`` or a manifest gives them), so the same code evaluates
a live cluster listing and a predicted post-apply state. Nothing here talks to
a cluster or imports the ``kubernetes`` client; callers load objects and pass
them in.

* :mod:`harden.impact.rbac` -- RBAC authorizer semantics, effective
  permissions per subject, permission diffs, ``can-i`` checks.
* :mod:`harden.impact.netpol` -- NetworkPolicy flow evaluation, reachability
  matrix and reachability diffs.
* :mod:`harden.impact.selectors` -- label selectors shared by both.
"""

from harden.impact import netpol, rbac, selectors

__all__ = ["netpol", "rbac", "selectors"]
