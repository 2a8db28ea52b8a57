"""harden: Terraform-style plan/apply of Kubernetes security hardening profiles.

The package is laid out as the pipeline it implements (see README "Architecture"):
load -> render -> observe -> diff -> plan -> apply -> state, with the shared vocabulary in
`model`, the only Kubernetes client import in `kube`, and typer/rich confined to `cli` and `views`.
"""

__version__ = "0.1.0"
