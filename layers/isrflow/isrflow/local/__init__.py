"""isrflow's local runtime: run the project's AWS pieces on one machine, with no AWS account.

Sub-packages are independent; import them directly (e.g. ``isrflow.local.asl``).
"""
