"""The `taskforge` command line (also `kubectl taskforge`): see main.py for the app."""
