"""The ``om`` command line."""


def main() -> None:
    from omops.cli.app import app

    app()
