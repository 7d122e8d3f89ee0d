"""The `stillwatch` command: thin Typer commands over the packages."""
