"""``python -m hybridmesh``: the command line."""

from hybridmesh.cli.main import main

main()
