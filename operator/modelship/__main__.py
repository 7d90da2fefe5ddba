"""`python -m modelship` is the `modelship` console script."""

from modelship.cli import main

if __name__ == "__main__":
    main()
