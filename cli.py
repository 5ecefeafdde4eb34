"""`python cli.py ARGS` is the same as `kaogen ARGS` (for a checkout without installation)."""

from kaogen.cli.main import main

if __name__ == "__main__":
    main()
