"""`kubectl modelship`: a kubectl plugin to watch and steer ModelDeployment rollouts.

It reads status and sends commands as a `modelship.dev/request` annotation; it never writes `spec`, so GitOps
tools keep owning the desired state and the operator stays the only writer of `status`.
"""
