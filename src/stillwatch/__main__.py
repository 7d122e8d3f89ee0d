from stillwatch.cli.main import app

app()
