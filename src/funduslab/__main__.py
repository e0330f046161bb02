"""``python -m funduslab`` — the same CLI as the ``funduslab`` command."""

from funduslab.cli import main

if __name__ == "__main__":
    main()
