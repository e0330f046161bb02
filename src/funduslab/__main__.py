"""``python -m funduslab`` — the same CLI as the ``funduslab`` command."""

from funduslab.cli import app

if __name__ == "__main__":
    app()
