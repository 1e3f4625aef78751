"""``otactl``: one module per subcommand, registered in :mod:`agent.cli.main`."""
