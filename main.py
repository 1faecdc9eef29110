"""lcross command line: `python main.py fit --config configs/tiny.yaml` (see README)."""

from lcross.cli import main

if __name__ == "__main__":
    main()
