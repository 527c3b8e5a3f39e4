"""trackgate: a multi-dialect tracking gateway.

This package is the composition root: the CLI, ``up`` with its embedded servers and the migrations. It
may import every part (``trackgate.gateway``, ``trackgate.adapters``, ``trackgate.schemas``,
``trackgate.workers``); no part imports it. See ARCHITECTURE.md.
"""
